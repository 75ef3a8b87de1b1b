// The review queue (templates/review/index.html): keyboard shortcuts and decisions without a
// page reload. Without this script every form still works by posting and redirecting.
//   A approve · R reject · C request changes (comment box; Enter sends, Shift+Enter new line,
//   Esc cancels) · J / ↓ / → next · K / ↑ / ← previous · X select · O / Enter open · ? help
(function () {
  "use strict";
  const queue = document.querySelector(".review-queue");
  const help = document.getElementById("shortcut-help");
  const helpButton = document.querySelector('[data-action="show-help"]');
  const items = queue ? Array.from(queue.querySelectorAll(".review-item")) : [];
  let current = -1;

  function showHelp() {
    if (help && !help.open) {
      if (typeof help.showModal === "function") help.showModal(); else help.setAttribute("open", "");
    }
  }
  if (helpButton) helpButton.addEventListener("click", showHelp);

  function select(index, focus) {
    if (!items.length) return;
    index = Math.max(0, Math.min(items.length - 1, index));
    if (current >= 0 && items[current]) items[current].classList.remove("current");
    current = index;
    const item = items[current];
    item.classList.add("current");
    item.setAttribute("aria-current", "true");
    items.forEach(function (other) { if (other !== item) other.removeAttribute("aria-current"); });
    if (focus !== false) item.focus({ preventScroll: true });
    item.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  function nextUndecided(from) {
    for (let i = from + 1; i < items.length; i++) {
      if (!items[i].classList.contains("decided")) return i;
    }
    return Math.min(from + 1, items.length - 1);
  }

  function fieldError(item, message) {
    const slot = item.querySelector('[data-field-error="comment"]');
    if (slot) slot.textContent = message || "";
    const comment = item.querySelector("textarea[name=comment]");
    if (comment) {
      if (message) comment.setAttribute("aria-invalid", "true"); else comment.removeAttribute("aria-invalid");
    }
  }

  function decided(item, body) {
    const state = item.querySelector('[data-role="state"]');
    if (state) {
      const badge = document.createElement("span");
      badge.className = "badge state-" + body.approval_state;
      badge.textContent = body.approval_state.replace(/_/g, " ");
      state.replaceChildren(badge);
    }
    item.classList.remove("decided-approved", "decided-rejected", "decided-changes_requested");
    item.classList.add("decided", "decided-" + body.approval_state);
    const comment = item.querySelector("textarea[name=comment]");
    if (comment) { comment.value = ""; delete comment.dataset.pending; }
    const box = item.querySelector('input[name="asset_ids"]');
    if (box) { box.checked = false; updateCount(); }
    fieldError(item, "");
  }

  async function send(form, submitter) {
    const item = form.closest(".review-item");
    if (form.dataset.sending) return;
    form.dataset.sending = "1";
    const data = new FormData(form);
    if (submitter && submitter.name) data.set(submitter.name, submitter.value);
    try {
      const response = await window.farm.fetch(form.action, {
        method: "POST", body: data, headers: { Accept: "application/json" },
      });
      const isJson = (response.headers.get("Content-Type") || "").includes("application/json");
      const body = isJson ? await response.json() : null;
      if (response.ok && body) {
        decided(item, body);
        select(nextUndecided(items.indexOf(item)));
      } else if (body && body.error) {
        fieldError(item, body.error.message);
        const comment = item.querySelector("textarea[name=comment]");
        if (comment && body.error.field === "comment") comment.focus();
      } else if (response.status === 400) {
        fieldError(item, "This page is stale; nothing was changed. Reload it and try again.");
      } else {
        fieldError(item, "Not saved (" + response.status + "). Reload the page and try again.");
      }
    } catch (error) {
      fieldError(item, "Not saved: the dashboard did not answer. Try again.");
    } finally {
      delete form.dataset.sending;
    }
  }

  items.forEach(function (item, index) {
    const form = item.querySelector(".decision-form");
    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        select(index, false);
        send(form, event.submitter);
      });
    }
    item.addEventListener("click", function (event) {
      if (!event.target.closest("a, button, input, textarea, label")) select(index);
    });
    item.addEventListener("focusin", function () { if (current !== index) select(index, false); });
  });

  function decide(decision) {
    if (current < 0) return;
    const form = items[current].querySelector(".decision-form");
    const button = form && form.querySelector('button[name="decision"][value="' + decision + '"]');
    if (button) form.requestSubmit(button);
  }

  function open() {
    if (current < 0) return;
    const link = items[current].querySelector(".review-thumb");
    if (link) window.location.assign(link.href);
  }

  function requestChanges() {
    if (current < 0) return;
    const comment = items[current].querySelector("textarea[name=comment]");
    if (!comment) return;
    comment.dataset.pending = "request_changes";
    comment.focus();
  }

  // Select all / the count of selected assets for "Approve selected".
  const selectAll = document.querySelector('[data-action="select-all"]');
  const count = document.querySelector('[data-role="selected-count"]');
  function boxes() { return Array.from(document.querySelectorAll('input[name="asset_ids"]')); }
  function updateCount() {
    if (!count) return;
    const n = boxes().filter(function (b) { return b.checked; }).length;
    count.textContent = n ? n + " selected" : "";
  }
  if (selectAll) {
    selectAll.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = selectAll.checked; });
      updateCount();
    });
  }
  boxes().forEach(function (b) { b.addEventListener("change", updateCount); });
  updateCount();

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target.closest && target.closest("input, textarea, select");
    if (typing) {
      if (event.key === "Escape") {
        if (target.dataset) delete target.dataset.pending;
        target.blur();
        if (current >= 0) items[current].focus({ preventScroll: true });
      } else if (event.key === "Enter" && !event.shiftKey && target.dataset && target.dataset.pending) {
        event.preventDefault();
        decide(target.dataset.pending);
      }
      return;
    }
    if (help && help.open) return;  // the dialog handles Esc itself
    let handled = true;
    switch (event.key) {
      case "?": showHelp(); break;
      case "j": case "J": case "ArrowDown": case "ArrowRight": select(current + 1); break;
      case "k": case "K": case "ArrowUp": case "ArrowLeft": select(current <= 0 ? 0 : current - 1); break;
      case "a": case "A": decide("approve"); break;
      case "r": case "R": decide("reject"); break;
      case "c": case "C": requestChanges(); break;
      case "x": case "X":
        if (current >= 0) {
          const box = items[current].querySelector('input[name="asset_ids"]');
          if (box) { box.checked = !box.checked; updateCount(); }
        }
        break;
      case "o": case "O": open(); break;
      case "Enter":
        // Enter on a focused link or button does what it always does.
        if (current >= 0 && target === items[current]) open(); else handled = false;
        break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  if (items.length) select(0, false);
})();
