"""Assets as the dashboard and the API see them: the gallery, the asset page, lineage."""
