// Campaign, template and batch pages: the editable table of variable rows, the template preview,
// and the batch form's conveniences. Every feature also works without this script (the buttons
// post the form and the server answers with the page).
(function () {
  "use strict";

  const RESERVED = new Set(["true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is",
    "if", "else", "loop", "self", "super", "caller", "varargs", "kwargs", "range", "dict", "lipsum",
    "cycler", "joiner", "namespace"]);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([key, value]) { node.setAttribute(key, value); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- the rows table ------------------------------------------------------------------------------

  // The index in a row's input names (rows[<index>].column); -1 for a row without inputs.
  function indexOfRow(tr) {
    const input = tr.querySelector("input[name^='rows[']");
    const match = input && input.name.match(/^rows\[(\d+)\]/);
    return match ? parseInt(match[1], 10) : -1;
  }

  function rowIndexes(table) {
    return Array.from(table.querySelectorAll("tbody tr[data-row]")).map(indexOfRow);
  }

  function columnsOf(table) {
    return Array.from(table.querySelectorAll("thead th[scope='col']")).map(function (th) { return th.textContent; });
  }

  function makeCell(index, column, value) {
    const name = "rows[" + index + "]." + column;
    const td = el("td");
    const label = el("label", { class: "visually-hidden", for: name }, "Row " + (index + 1) + " " + column);
    const input = el("input", { id: name, name: name, "data-column": column });
    input.value = value || "";
    const error = el("p", { class: "field-error", id: "error-" + name, "data-error-for": name, role: "alert" });
    error.hidden = true;
    td.append(label, input, error);
    return td;
  }

  function makeRow(table, index, values) {
    const tr = el("tr", { "data-row": "" });
    tr.append(el("td", { class: "row-number" }, ""));
    columnsOf(table).forEach(function (column) { tr.append(makeCell(index, column, values[column])); });
    const actions = el("td", { class: "actions" });
    actions.append(el("button", { type: "button", class: "linklike", "data-remove-row": "" }, "Remove"));
    tr.append(actions);
    return tr;
  }

  function renumber(table) {
    table.querySelectorAll("tbody tr[data-row]").forEach(function (tr, position) {
      const cell = tr.querySelector(".row-number");
      if (cell) cell.textContent = String(position + 1);
    });
  }

  function rowValues(tr) {
    const values = {};
    tr.querySelectorAll("input[data-column]").forEach(function (input) { values[input.dataset.column] = input.value; });
    return values;
  }

  function setColumns(table, columns) {
    const current = columnsOf(table);
    if (current.join("\u0000") === columns.join("\u0000")) return;
    const headRow = table.querySelector("thead tr");
    headRow.querySelectorAll("th[scope='col']").forEach(function (th) { th.remove(); });
    const last = headRow.lastElementChild;
    columns.forEach(function (column) { headRow.insertBefore(el("th", { scope: "col" }, column), last); });
    const body = table.querySelector("tbody");
    let next = Math.max(-1, ...rowIndexes(table)) + 1;
    Array.from(body.querySelectorAll("tr[data-row]")).forEach(function (tr) {
      const index = indexOfRow(tr);
      body.replaceChild(makeRow(table, index < 0 ? next++ : index, rowValues(tr)), tr);
    });
    renumber(table);
    const note = table.parentElement.querySelector("[data-no-columns]");
    if (note) note.hidden = columns.length > 0;
  }

  function initRowsEditor(editor) {
    const table = editor.querySelector("[data-rows-table]");
    const add = editor.querySelector("[data-add-row]");
    if (add) {
      add.addEventListener("click", function (event) {
        event.preventDefault();
        const next = Math.max(-1, ...rowIndexes(table)) + 1;
        const tr = makeRow(table, next, {});
        table.querySelector("tbody").append(tr);
        renumber(table);
        const first = tr.querySelector("input");
        if (first) first.focus();
      });
    }
    table.addEventListener("click", function (event) {
      const button = event.target.closest("[data-remove-row]");
      if (!button) return;
      event.preventDefault();
      const rows = table.querySelectorAll("tbody tr[data-row]");
      const tr = button.closest("tr");
      if (rows.length > 1) {
        tr.remove();
      } else {
        tr.querySelectorAll("input").forEach(function (input) { input.value = ""; });
      }
      renumber(table);
      table.dispatchEvent(new Event("change", { bubbles: true }));
    });
  }

  // -- the template form: columns follow the variables, and the preview ------------------------------

  function declaredColumns(form) {
    const declared = form.querySelector("[data-variables]");
    const names = declared ? declared.value.split(/[\s,]+/).filter(Boolean) : [];
    if (names.length) return Array.from(new Set(names));
    const text = ["body", "negative_body"].map(function (name) {
      const field = form.elements[name];
      return field ? field.value : "";
    }).join("\n");
    const found = new Set();
    const pattern = /\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)/g;
    let match;
    while ((match = pattern.exec(text)) !== null) {
      if (!RESERVED.has(match[1])) found.add(match[1]);
    }
    return Array.from(found).sort();
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach(function (slot) { slot.hidden = true; slot.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (field) { field.removeAttribute("aria-invalid"); });
    form.querySelectorAll(".has-error").forEach(function (node) { node.classList.remove("has-error"); });
  }

  function showError(form, field, message) {
    const slot = form.querySelector('[data-error-for="' + CSS.escape(field) + '"]');
    if (!slot) return false;
    slot.textContent = message;
    slot.hidden = false;
    const input = document.getElementById(field);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", slot.id);
    }
    const holder = slot.closest(".field, td");
    if (holder) holder.classList.add("has-error");
    return true;
  }

  function renderPreview(target, data) {
    target.replaceChildren();
    if (!data.rows.length) {
      target.append(el("p", { class: "muted" }, "The texts are fine. Type values into a row to see its prompt."));
      return;
    }
    target.append(el("p", { class: "preview-status " + (data.ok ? "ok" : "bad") },
      data.ok ? "Every row expands." : "Some rows do not expand: see the marked cells."));
    const table = el("table", { class: "table compact preview-table" });
    const head = el("thead");
    const headRow = el("tr");
    ["Row", "Prompt", "Negative prompt"].forEach(function (title) { headRow.append(el("th", {}, title)); });
    head.append(headRow);
    const body = el("tbody");
    data.rows.forEach(function (row) {
      const tr = el("tr", row.errors.length ? { class: "row-error" } : {});
      tr.append(el("td", {}, String(row.index + 1)));
      if (row.errors.length) {
        const cell = el("td", { colspan: "2", class: "field-error" });
        cell.textContent = row.errors.map(function (e) { return e.field + ": " + e.message; }).join("\n");
        tr.append(cell);
      } else {
        const prompt = el("td");
        prompt.append(el("code", { class: "prompt" }, row.prompt));
        const negative = el("td");
        if (row.negative_prompt) negative.append(el("code", { class: "prompt" }, row.negative_prompt));
        else negative.append(el("span", { class: "muted" }, "none"));
        tr.append(prompt, negative);
      }
      body.append(tr);
    });
    table.append(head, body);
    target.append(table);
  }

  function initTemplateForm(form) {
    const table = form.querySelector("[data-rows-table]");
    let timer = null;
    function syncColumns() {
      clearTimeout(timer);
      timer = setTimeout(function () { if (table) setColumns(table, declaredColumns(form)); }, 250);
    }
    ["variables", "body", "negative_body"].forEach(function (name) {
      const field = form.elements[name];
      if (field) field.addEventListener("input", syncColumns);
    });

    const button = form.querySelector("[data-preview]");
    const results = form.querySelector("#preview-results");
    if (!button || !results) return;
    button.addEventListener("click", function (event) {
      event.preventDefault();
      const body = new FormData(form);
      body.set("action", "preview");
      button.disabled = true;
      results.setAttribute("aria-busy", "true");
      window.farm.fetch(form.dataset.previewUrl, { method: "POST", body: body })
        .then(function (response) {
          return response.json().then(function (data) { return { status: response.status, data: data }; });
        })
        .then(function (answer) {
          clearErrors(form);
          if (answer.data.error) {
            results.replaceChildren();
            const field = answer.data.error.field;
            if (!field || !showError(form, field, answer.data.error.message)) {
              results.append(el("p", { class: "error", role: "alert" },
                (field ? field + ": " : "") + answer.data.error.message));
            }
            return;
          }
          renderPreview(results, answer.data);
          answer.data.rows.forEach(function (row) {
            row.errors.forEach(function (e) { showError(form, e.field, e.message); });
          });
        })
        .catch(function () {
          results.replaceChildren(el("p", { class: "error", role: "alert" },
            "The preview could not be loaded; press Preview again."));
        })
        .finally(function () {
          button.disabled = false;
          results.removeAttribute("aria-busy");
        });
    });
  }

  // -- the batch form: a new version reloads its columns, and a changed form needs a new check -----------

  function initBatchForm(form) {
    const select = form.querySelector("select[data-autoload]");
    const load = form.querySelector("[data-load-version]");
    if (select && load) {
      select.addEventListener("change", function () { load.click(); });
    }
    const plan = form.querySelector("[data-plan]");
    const submit = form.querySelector("[data-submit-batch]");
    if (!plan || !submit) return;
    function stale(event) {
      if (event.target === select) return;
      plan.classList.add("stale");
      submit.disabled = true;
      const note = plan.querySelector("[data-plan-stale]");
      if (note) note.hidden = false;
    }
    form.addEventListener("input", stale);
    form.addEventListener("change", stale);
  }

  document.querySelectorAll("[data-rows-editor]").forEach(initRowsEditor);
  document.querySelectorAll("form[data-preview-url]").forEach(initTemplateForm);
  document.querySelectorAll("form[data-batch-form]").forEach(initBatchForm);
})();
