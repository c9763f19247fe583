// Loaded first: keeps every error the page meets in window.pageErrors (a
// browser test reads it), and still shows it in the console.
"use strict";
window.pageErrors = [];
window.addEventListener(
  "error",
  (e) => {
    const where = e.target && e.target !== window ? ` (${e.target.src || e.target.href || e.target.tagName})` : "";
    window.pageErrors.push(`${e.message || "resource failed to load"}${where}`);
  },
  true,
);
window.addEventListener("unhandledrejection", (e) => {
  window.pageErrors.push(`unhandled rejection: ${e.reason}`);
});
const consoleError = console.error.bind(console);
console.error = (...args) => {
  window.pageErrors.push(args.map(String).join(" "));
  consoleError(...args);
};
