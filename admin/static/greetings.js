// Live preview of greeting templates in the console: every <output data-template="ID" data-values='{...}'>
// shows the textarea ID with its {placeholders} filled from data-values, as staff type (same rule as the server:
// unknown placeholders are left as they are; the server checks them on save).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("output[data-template]").forEach(function (out) {
    var area = document.getElementById(out.dataset.template);
    var values = JSON.parse(out.dataset.values || "{}");
    if (!area) return;
    area.addEventListener("input", function () {
      out.textContent = area.value.replace(/\{([^{}]*)\}/g, function (whole, key) {
        return Object.prototype.hasOwnProperty.call(values, key) ? values[key] : whole;
      });
    });
  });
});
