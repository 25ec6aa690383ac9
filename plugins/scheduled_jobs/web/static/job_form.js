// The job form's script (static/job_form.js): the identifier from the name, the fields of the chosen job
// type, the inline cron check, and the YAML's Copy and Download.
(function () {
  var form = document.getElementById("job-form");
  var name = document.getElementById("f-name"), identifier = document.getElementById("f-identifier");
  var kind = document.getElementById("f-job");
  // The same rule as identifiers.py: fold accents, lowercase, join the ASCII letters and digits with "-".
  var LIGATURES = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L",
                   "đ": "d", "Đ": "D", "þ": "th", "Þ": "TH"};
  function identifierFrom(text) {
    var folded = text.replace(/[ßæÆøØœŒłŁđĐþÞ]/g, function (c) { return LIGATURES[c]; }).normalize("NFKD");
    return folded.replace(/[^\x00-\x7f]/g, "").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  }
  name.addEventListener("input", function () {
    if (identifier.dataset.auto === "yes") identifier.value = identifierFrom(name.value);
  });
  identifier.addEventListener("input", function () { identifier.dataset.auto = identifier.value ? "no" : "yes"; });
  function showKind() {
    document.querySelectorAll("form.job fieldset[data-kinds]").forEach(function (set) {
      var on = set.dataset.kinds.split(" ").indexOf(kind.value) >= 0;
      set.hidden = !on; set.disabled = !on;  // a hidden field is not sent
    });
  }
  kind.addEventListener("change", showKind); showKind();
  // The cron checker, inline: the same API as the Cron checker page, asked 300 ms after the last key.
  var expression = document.getElementById("f-expression"), zone = document.getElementById("f-timezone");
  var out = document.getElementById("cron-check"), timer = null, asked = 0;
  function text(tag, value, cls) { var e = document.createElement(tag); e.textContent = value; if (cls) e.className = cls; return e; }
  function check() {
    var mine = ++asked;
    if (!expression.value.trim()) { out.replaceChildren(); return; }
    var query = new URLSearchParams({expression: expression.value, timezone: zone.value || zone.placeholder, count: "5"});
    fetch(form.dataset.api + "?" + query, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (answer) {
      if (mine !== asked) return;  // an older answer arriving late
      if (!answer.valid) {
        var list = text("ul", "", "problems");
        (answer.errors || [answer.detail]).forEach(function (e) { list.appendChild(text("li", typeof e === "string" ? e : JSON.stringify(e))); });
        out.replaceChildren(list); out.dataset.state = "invalid"; return;
      }
      var fires = text("ul", "", "fires");
      answer.next_fire_times.forEach(function (f) {
        var item = document.createElement("li");
        item.appendChild(text("code", f.at.slice(0, 10) + " " + f.at.slice(11, 16) + " (UTC" + (f.at.slice(19) || "+00:00") + ")"));
        if (f.note) item.appendChild(text("span", " " + f.note, "dst"));
        fires.appendChild(item);
      });
      out.replaceChildren(text("span", answer.description || answer.expression, "description"),
                          document.createTextNode(" (" + answer.timezone + "), next " + answer.next_fire_times.length + ":"), fires);
      out.dataset.state = "valid";
    }).catch(function () {});
  }
  function later() { clearTimeout(timer); timer = setTimeout(check, 300); }
  expression.addEventListener("input", later); zone.addEventListener("input", later); zone.addEventListener("change", later);
  var yaml = document.getElementById("yaml");
  if (yaml) {
    document.getElementById("copy-yaml").addEventListener("click", function () {
      var done = function () { document.getElementById("copy-yaml").textContent = "Copied"; };
      if (navigator.clipboard) { navigator.clipboard.writeText(yaml.textContent).then(done, function () {}); }
      var range = document.createRange(); range.selectNodeContents(yaml);
      var selection = window.getSelection(); selection.removeAllRanges(); selection.addRange(range);
    });
    var link = document.getElementById("download-yaml");
    link.href = URL.createObjectURL(new Blob([yaml.textContent], {type: "application/yaml"}));
  }
})();
