// console.js: small progressive enhancements of the admin console. Every page works without
// it: the contact lookup is a search form, selections are checkboxes, a job's progress page
// reloads itself with its own link.
//
// - [data-lookup] forms search as the administrator types: the same GET the form makes is
//   fetched and the results section of the answer replaces the one on the page.
// - A "select all" box is added above the users table.
// - [data-refresh] elements reload the page every few seconds while a job runs.
"use strict";

(function () {
  function debounce(fn, ms) {
    var t;
    return function () {
      clearTimeout(t);
      t = setTimeout(fn, ms);
    };
  }

  function enhanceLookup(form) {
    var input = form.querySelector('input[type="search"]');
    var results = document.getElementById("lookup-results");
    if (!input || !results || !window.fetch || !window.DOMParser) {
      return;
    }
    var seq = 0;
    var run = debounce(function () {
      var q = input.value.trim();
      if (q.length < 2) {
        return;
      }
      var url = new URL(form.action, window.location.href);
      new FormData(form).forEach(function (v, k) {
        url.searchParams.set(k, v);
      });
      url.hash = "";
      var mine = ++seq;
      fetch(url.toString(), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (res) {
          return res.ok ? res.text() : null;
        })
        .then(function (html) {
          if (html === null || mine !== seq) {
            return;
          }
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("lookup-results");
          if (fresh) {
            results.replaceWith(document.importNode(fresh, true));
            results = document.getElementById("lookup-results");
          }
        })
        .catch(function () {});
    }, 250);
    input.addEventListener("input", run);
    var select = form.querySelector("select");
    if (select) {
      select.addEventListener("change", run);
    }
  }

  function enhanceSelectAll() {
    var table = document.querySelector("table.users");
    var boxes = table ? table.querySelectorAll('tbody input[type="checkbox"][name="user"]') : [];
    var head = table ? table.querySelector("thead th.select") : null;
    if (!boxes.length || !head) {
      return;
    }
    var all = document.createElement("input");
    all.type = "checkbox";
    all.id = "select-all";
    all.setAttribute("aria-label", "Select every user on this page");
    head.replaceChildren(all);
    all.addEventListener("change", function () {
      boxes.forEach(function (b) {
        b.checked = all.checked;
      });
    });
  }

  function enhanceRefresh() {
    var el = document.querySelector("[data-refresh]");
    if (!el) {
      return;
    }
    var secs = parseInt(el.getAttribute("data-refresh"), 10) || 2;
    setTimeout(function () {
      window.location.reload();
    }, secs * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-lookup]").forEach(enhanceLookup);
    enhanceSelectAll();
    enhanceRefresh();
  });
})();
