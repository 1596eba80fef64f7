/* Sockdrill Socks: what every page shares (API calls, header, footer, log in / register, cart count). */
"use strict";

const Shop = (() => {
  const SHIPPING = 4.99;

  /* Build an element: el("a", {href: "x", class: "y"}, "text", child...). Text is never parsed as HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svgIcon(path) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    p.setAttribute("fill", "currentColor");
    svg.append(p);
    return svg;
  }

  /* One request; the answer's body parsed as JSON when it is JSON (some proxied bodies are untyped). */
  async function api(method, url, body, headers) {
    const opts = { method, headers: Object.assign({}, headers || {}), credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json; charset=utf-8";
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, opts);
    } catch (err) {
      return { status: 0, ok: false, data: { message: "The shop could not be reached." } };
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = text; }
    }
    return { status: res.status, ok: res.ok, data };
  }

  function money(value) {
    return "$" + Number(value || 0).toFixed(2);
  }

  function cookie(name) {
    const hit = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith(name + "="));
    return hit ? decodeURIComponent(hit.slice(name.length + 1)) : null;
  }

  function isLoggedIn() {
    return cookie("logged_in") !== null;
  }

  function param(name) {
    return new URLSearchParams(location.search).get(name);
  }

  function errorText(data, fallback) {
    if (data && typeof data === "object") return data.message || data.error || fallback;
    if (typeof data === "string" && data) return data;
    return fallback;
  }

  /* "2022-05-18T21:56:40.476+0000" → a readable local date (Date wants +00:00). */
  function formatDate(value) {
    if (!value) return "";
    const d = new Date(String(value).replace(/([+-]\d\d)(\d\d)$/, "$1:$2"));
    if (isNaN(d)) return String(value);
    return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit" });
  }

  let toastTimer = null;
  function toast(message) {
    let node = document.getElementById("toast");
    if (!node) {
      node = el("div", { id: "toast", class: "toast", role: "status" });
      document.body.append(node);
    }
    node.textContent = message;
    node.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => node.classList.remove("show"), 2500);
  }

  /* ---- catalogue cache: one request per sock per page view --------------------------------- */
  const sockCache = new Map();
  function sock(id) {
    if (!sockCache.has(id)) {
      sockCache.set(id, api("GET", "/catalogue/" + encodeURIComponent(id)).then((r) =>
        r.status === 200 && r.data && typeof r.data === "object" && r.data.id ? r.data : null));
    }
    return sockCache.get(id);
  }

  function productTile(item) {
    const href = "detail.html?id=" + encodeURIComponent(item.id);
    const image = (item.imageUrl || [])[0];
    return el("article", { class: "tile", dataset: { id: item.id } },
      el("a", { class: "img", href, tabindex: "-1" }, image ? el("img", { src: image, alt: "", loading: "lazy" }) : null),
      el("div", { class: "body" },
        el("a", { class: "name", href }, item.name),
        el("span", { class: "price" }, money(item.price)),
        el("div", { class: "tags" }, (item.tag || []).map((t) => el("span", { class: "chip" }, t)))));
  }

  /* ---- header: account bar, navigation, cart count ----------------------------------------- */
  const CART_ICON = "M7 18a2 2 0 1 0 0 4 2 2 0 0 0 0-4zm10 0a2 2 0 1 0 0 4 2 2 0 0 0 0-4zM5.2 4l.4 2H21l-2.3 8.2"
    + "a2 2 0 0 1-1.9 1.5H8.4a2 2 0 0 1-2-1.6L4.1 3H2V1h3.7z";

  function renderHeader() {
    const host = document.getElementById("site-header");
    if (!host) return;
    const page = document.body.dataset.page;
    const link = (href, text, key) => el("a", { href, class: key === page ? "active" : null }, text);
    host.replaceChildren(
      el("div", { class: "topbar" }, el("div", { class: "inner" },
        el("span", {}, "Flat $4.99 shipping on every order"),
        el("div", { class: "account", id: "account" }))),
      el("header", { class: "masthead" }, el("div", { class: "inner" },
        el("a", { class: "logo", href: "index.html" }, logoMark(),
          el("span", {}, "Sockdrill", el("small", {}, "socks & hosiery"))),
        el("nav", { class: "mainnav" },
          link("index.html", "Home", "home"),
          link("category.html", "Socks", "category"),
          link("search.html", "Search", "search"),
          el("a", { href: "customer-orders.html", id: "nav-orders", class: page === "orders" ? "active" : null,
            hidden: !isLoggedIn() }, "My orders"),
          el("a", { href: "profile.html", id: "nav-profile", class: page === "profile" ? "active" : null,
            hidden: !isLoggedIn() }, "My profile")),
        el("a", { class: "cart-link", href: "basket.html", id: "cart-link" }, svgIcon(CART_ICON),
          el("span", { id: "cart-count" }, "0 items in cart")))));
    renderAccount();
    refreshCart();
  }

  function logoMark() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 32 32");
    svg.setAttribute("class", "logo-mark");
    svg.setAttribute("aria-hidden", "true");
    const sockPath = document.createElementNS(ns, "path");
    sockPath.setAttribute("d", "M11 2h10v14l6 6a5 5 0 0 1-7 7l-9-9z");
    sockPath.setAttribute("fill", "#e4572e");
    const cuff = document.createElementNS(ns, "rect");
    cuff.setAttribute("x", "11"); cuff.setAttribute("y", "2"); cuff.setAttribute("width", "10");
    cuff.setAttribute("height", "4"); cuff.setAttribute("fill", "#17838a");
    svg.append(sockPath, cuff);
    return svg;
  }

  async function renderAccount() {
    const box = document.getElementById("account");
    if (!box) return;
    for (const id of ["nav-orders", "nav-profile"]) {
      const link = document.getElementById(id);
      if (link) link.hidden = !isLoggedIn();
    }
    if (!isLoggedIn()) {
      box.replaceChildren(
        el("button", { class: "linkish", type: "button", id: "login-link", onclick: () => openLogin() }, "Log in"),
        el("span", {}, "·"),
        el("button", { class: "linkish", type: "button", id: "register-link", onclick: () => openRegister() },
          "Register"));
      return;
    }
    box.replaceChildren(el("span", { id: "howdy" }, "Logged in"),
      el("span", {}, "·"),
      el("button", { class: "linkish", type: "button", id: "logout-link", onclick: logout }, "Log out"));
    const who = await api("GET", "/customers/" + encodeURIComponent(cookie("logged_in")));
    const user = who.data && typeof who.data === "object" ? who.data : {};
    const howdy = document.getElementById("howdy");
    if (howdy && user.firstName !== undefined) {
      howdy.replaceChildren("Logged in as ", el("span", { class: "who" },
        `${user.firstName || ""} ${user.lastName || ""}`.trim() || user.username || "you"));
    }
  }

  async function refreshCart() {
    const target = document.getElementById("cart-count");
    if (!target) return [];
    const res = await api("GET", "/cart");
    const items = Array.isArray(res.data) ? res.data : [];
    const count = items.reduce((sum, item) => sum + (Number(item.quantity) || 0), 0);
    target.textContent = count === 0 ? "0 items in cart" : `${count} item(s) in cart`;
    return items;
  }

  async function addToCart(id) {
    const res = await api("POST", "/cart", { id });
    if (res.status === 201) {
      toast("Added to your basket");
      await refreshCart();
      return true;
    }
    toast("Could not add to cart: " + errorText(res.data, "error " + res.status));
    return false;
  }

  function changed() {
    renderAccount();
    refreshCart();
    document.dispatchEvent(new CustomEvent("shop:account"));
  }

  async function logout() {
    await api("POST", "/logout");
    document.cookie = "logged_in=; Max-Age=0; path=/";
    changed();
    toast("You are logged out");
  }

  /* ---- log in / register dialogs ----------------------------------------------------------- */
  function field(label, attrs) {
    return [el("label", { for: attrs.id }, label), el("input", attrs)];
  }

  function dialogShell(id, title, fields, submitText, footer, onsubmit) {
    const error = el("div", { class: "alert alert-error", hidden: true, role: "alert" });
    const dialog = el("dialog", { id },
      el("form", { method: "dialog", novalidate: true, onsubmit: async (ev) => {
        ev.preventDefault();
        error.hidden = true;
        const button = dialog.querySelector("button[type=submit]");
        button.disabled = true;
        try {
          const problem = await onsubmit(dialog);
          if (problem) {
            error.textContent = problem;
            error.hidden = false;
          } else {
            dialog.close();
            changed();
          }
        } finally {
          button.disabled = false;
        }
      } },
      el("div", { class: "dialog-head" }, el("h2", {}, title),
        el("button", { class: "btn-icon", type: "button", "aria-label": "Close", onclick: () => dialog.close() }, "×")),
      el("p", { class: "muted note", hidden: true }),
      fields, error,
      el("button", { class: "btn btn-primary btn-block", type: "submit" }, submitText),
      el("p", { class: "switch" }, footer)));
    document.body.append(dialog);
    return dialog;
  }

  function ensureDialogs() {
    if (document.getElementById("login-dialog")) return;
    dialogShell("login-dialog", "Log in", [
      field("Username", { id: "login-username", type: "text", name: "username", autocomplete: "username" }),
      field("Password", { id: "login-password", type: "password", name: "password",
        autocomplete: "current-password" }),
    ], "Log in", ["New here? ", el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); openRegister(); } },
      "Create an account")], async () => {
      const username = document.getElementById("login-username").value.trim();
      const password = document.getElementById("login-password").value;
      if (!username || !password) return "Please enter your username and password.";
      const token = btoa(unescape(encodeURIComponent(username + ":" + password)));
      const res = await api("GET", "/login", undefined, { Authorization: "Basic " + token });
      if (res.status === 200) { toast("Welcome back!"); return null; }
      if (res.status === 401) return "Invalid username or password.";
      return "Log in failed: " + errorText(res.data, "error " + res.status);
    });
    dialogShell("register-dialog", "Create an account", [
      field("Username", { id: "register-username", type: "text", autocomplete: "username" }),
      el("div", { class: "row" },
        el("div", {}, field("First name", { id: "register-first", type: "text", autocomplete: "given-name" })),
        el("div", {}, field("Last name", { id: "register-last", type: "text", autocomplete: "family-name" }))),
      field("Email", { id: "register-email", type: "email", autocomplete: "email" }),
      field("Password", { id: "register-password", type: "password", autocomplete: "new-password" }),
    ], "Register", ["Already have an account? ", el("a", { href: "#", onclick: (ev) => {
      ev.preventDefault(); openLogin(); } }, "Log in")], async () => {
      const body = {
        username: document.getElementById("register-username").value.trim(),
        firstName: document.getElementById("register-first").value.trim(),
        lastName: document.getElementById("register-last").value.trim(),
        email: document.getElementById("register-email").value.trim(),
        password: document.getElementById("register-password").value,
      };
      if (!body.username || !body.password) return "Choose a username and a password.";
      const res = await api("POST", "/register", body);
      if (res.status === 200) { toast("Welcome to Sockdrill!"); return null; }
      return "Registration failed: " + errorText(res.data, "that username may be taken");
    });
  }

  function openDialog(id, note) {
    ensureDialogs();
    for (const open of document.querySelectorAll("dialog[open]")) open.close();
    const dialog = document.getElementById(id);
    const noteNode = dialog.querySelector(".note");
    noteNode.textContent = note || "";
    noteNode.hidden = !note;
    dialog.querySelector(".alert").hidden = true;
    dialog.showModal();
    dialog.querySelector("input").focus();
  }

  function openLogin(note) { openDialog("login-dialog", note); }
  function openRegister(note) { openDialog("register-dialog", note); }

  function renderFooter() {
    const host = document.getElementById("site-footer");
    if (!host) return;
    host.replaceChildren(el("footer", { class: "footer" }, el("div", { class: "inner" },
      el("div", {}, el("h4", {}, "Sockdrill Socks"),
        el("p", {}, "A small sock shop that runs on a handful of services. Handle with care; it pages.")),
      el("div", {}, el("h4", {}, "Shop"), el("a", { href: "category.html" }, "All socks"),
        el("a", { href: "basket.html" }, "Basket")),
      el("div", {}, el("h4", {}, "Account"), el("a", { href: "customer-orders.html" }, "My orders"),
        el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); openLogin(); } }, "Log in")))));
  }

  document.addEventListener("DOMContentLoaded", () => {
    renderHeader();
    renderFooter();
  });

  return { SHIPPING, el, api, money, cookie, isLoggedIn, param, errorText, formatDate, toast, sock, productTile,
    refreshCart, addToCart, openLogin, openRegister };
})();
