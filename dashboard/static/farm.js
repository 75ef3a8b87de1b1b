// The dashboard's own script (no CDN). Loaded by base.html on every page.
(function () {
  "use strict";
  const tokenMeta = document.querySelector('meta[name="csrf-token"]');

  // The CSRF token of this session: send it as X-CSRF-Token with every fetch() that changes
  // something, or use farm.fetch(), which does it for you.
  function csrfToken() {
    return tokenMeta ? tokenMeta.content : "";
  }

  // fetch() for same-site calls to page routes: adds the CSRF header on unsafe methods.
  function farmFetch(url, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    const method = (opts.method || "GET").toUpperCase();
    if (!["GET", "HEAD", "OPTIONS"].includes(method)) {
      opts.headers = new Headers(opts.headers || {});
      opts.headers.set("X-CSRF-Token", csrfToken());
    }
    return fetch(url, opts);
  }

  // <form data-confirm="Really?"> asks before submitting (inline onsubmit is not allowed by our CSP).
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    // A double click must not submit twice (the server also refuses a repeated submission_key).
    if (form.dataset.submitting) {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "1";
    setTimeout(function () { delete form.dataset.submitting; }, 3000);
  });

  window.farm = { csrfToken: csrfToken, fetch: farmFetch };
})();
