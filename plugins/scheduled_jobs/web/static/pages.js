// Every page's script, served by the plugin (static/pages.js): the pages' Content-Security-Policy allows
// scripts from this origin only, so no page holds an inline script or an on... attribute.

// Inside Airflow's UI these pages live in a sandboxed iframe that may not navigate the top window.
// Links to Airflow's own pages (data-airflow) are handed to the UI's router instead, as the UI's own
// links would be; opened on their own, the pages follow links as usual.
document.addEventListener("click", function (event) {
  var link = event.target.closest("a[data-airflow]");
  if (!link || window.top === window || event.ctrlKey || event.metaKey || event.shiftKey) return;
  try {
    var url = new URL(link.href);
    window.top.history.pushState({}, "", url.pathname + url.search);
    window.top.dispatchEvent(new PopStateEvent("popstate", {state: {}}));
    event.preventDefault();
  } catch (error) {
    // Not the same origin as the UI: follow the link inside the frame.
  }
});

// The task list's "select all" box: (un)ticks every task's box.
document.addEventListener("change", function (event) {
  var all = event.target.closest("input[data-select-all]");
  if (!all) return;
  document.querySelectorAll("input[name=id]").forEach(function (box) { box.checked = all.checked; });
});
