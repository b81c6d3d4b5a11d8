// sessions_db inspector: loads older messages in place. Every page works without it:
// the "Older messages" link opens the older messages as a page of their own.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var target = event.target;
    var link = target && target.closest ? target.closest("a[data-older]") : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) {
      return;
    }
    var list = document.getElementById("messages");
    if (!list) {
      return;
    }
    event.preventDefault();
    if (link.getAttribute("aria-busy") === "true") {
      return;
    }
    link.setAttribute("aria-busy", "true");
    fetch(link.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        page.querySelectorAll("#messages > li").forEach(function (item) {
          list.appendChild(document.importNode(item, true));
        });
        var next = page.querySelector("a[data-older]");
        if (next) {
          link.setAttribute("href", next.getAttribute("href"));
          link.removeAttribute("aria-busy");
        } else {
          link.parentNode.removeChild(link);
        }
      })
      .catch(function () {
        window.location.assign(link.href);
      });
  });
})();
