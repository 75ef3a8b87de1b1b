"""Review: reviewers' decisions on assets, re-renders with changes, versions and comparison."""
