/* Sockdrill Socks: the logic of each page, picked by <body data-page="...">. */
"use strict";

(() => {
  const { el, api, money } = Shop;
  const PAGE_SIZE = 6;

  function fail(node, message) {
    node.replaceChildren(el("div", { class: "alert alert-error" }, message));
  }

  function loginPrompt(node, text) {
    node.replaceChildren(el("div", { class: "empty" },
      el("p", {}, text),
      el("button", { class: "btn btn-primary", type: "button", onclick: () => Shop.openLogin() }, "Log in")));
  }

  /* ---- home --------------------------------------------------------------------------------- */
  async function home() {
    const box = document.getElementById("featured");
    const res = await api("GET", "/catalogue?size=5");
    if (!Array.isArray(res.data)) return fail(box, "The catalogue is not available right now.");
    box.replaceChildren(...res.data.map(Shop.productTile));
  }

  /* ---- category: tag filter + paging -------------------------------------------------------- */
  async function category() {
    const products = document.getElementById("products");
    const pager = document.getElementById("pager");
    const count = document.getElementById("result-count");
    const tagList = document.getElementById("tag-list");
    const selected = new Set((Shop.param("tags") || "").split(",").filter(Boolean));
    let page = Math.max(1, parseInt(Shop.param("page") || "1", 10) || 1);

    const tagsRes = await api("GET", "/tags");
    const tags = tagsRes.data && Array.isArray(tagsRes.data.tags) ? tagsRes.data.tags : [];
    tagList.replaceChildren(...tags.map((tag) => el("label", {},
      el("input", { type: "checkbox", value: tag, checked: selected.has(tag) }), tag)));
    if (!tags.length) tagList.replaceChildren(el("p", { class: "muted" }, "No tags."));

    function go(newPage) {
      page = newPage;
      const query = new URLSearchParams();
      if (selected.size) query.set("tags", [...selected].join(","));
      if (page > 1) query.set("page", String(page));
      history.replaceState(null, "", "category.html" + (query.toString() ? "?" + query : ""));
      load();
    }

    document.getElementById("tag-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      selected.clear();
      for (const box of tagList.querySelectorAll("input:checked")) selected.add(box.value);
      go(1);
    });
    document.getElementById("clear-tags").addEventListener("click", () => {
      for (const box of tagList.querySelectorAll("input")) box.checked = false;
      selected.clear();
      go(1);
    });

    async function load() {
      const tagParam = encodeURIComponent([...selected].join(","));
      const [sizeRes, listRes] = await Promise.all([
        api("GET", "/catalogue/size?tags=" + tagParam),
        api("GET", `/catalogue?page=${page}&size=${PAGE_SIZE}&tags=${tagParam}`),
      ]);
      if (!Array.isArray(listRes.data)) return fail(products, "The catalogue is not available right now.");
      const total = sizeRes.data && typeof sizeRes.data.size === "number" ? sizeRes.data.size : listRes.data.length;
      const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
      if (listRes.data.length === 0) {
        products.replaceChildren(el("p", { class: "muted" }, "No socks match these tags."));
      } else {
        products.replaceChildren(...listRes.data.map(Shop.productTile));
      }
      const first = total ? (page - 1) * PAGE_SIZE + 1 : 0;
      count.textContent = `Showing ${first}–${Math.min(page * PAGE_SIZE, total)} of ${total} socks`;
      const nav = [];
      const pageLink = (n, text, cls) => el("a", { href: "#", class: cls, onclick: (ev) => {
        ev.preventDefault(); go(n); } }, text);
      nav.push(page > 1 ? pageLink(page - 1, "‹ Prev") : el("span", { class: "disabled" }, "‹ Prev"));
      for (let n = 1; n <= pages; n++) {
        nav.push(n === page ? el("span", { class: "current", "aria-current": "page" }, String(n)) : pageLink(n, String(n)));
      }
      nav.push(page < pages ? pageLink(page + 1, "Next ›") : el("span", { class: "disabled" }, "Next ›"));
      pager.replaceChildren(...nav);
    }
    load();
  }

  /* ---- search: words, phrases, tags, price range, stock, sort; partial answers say so ------------ */
  async function search() {
    const form = document.getElementById("search-form");
    const products = document.getElementById("products");
    const pager = document.getElementById("pager");
    const count = document.getElementById("result-count");
    const banner = document.getElementById("partial-banner");
    const tagBox = document.getElementById("search-tags");
    const fields = { q: "search-q", price_min: "price-min", price_max: "price-max", sort: "search-sort" };
    const state = new URLSearchParams(location.search);
    for (const [name, id] of Object.entries(fields)) {
      if (state.get(name)) document.getElementById(id).value = state.get(name);
    }
    document.getElementById("in-stock").checked = state.get("in_stock") === "1";
    const chosen = new Set((state.get("tags") || "").split(",").filter(Boolean));
    const tagsRes = await api("GET", "/tags");
    const tags = tagsRes.data && Array.isArray(tagsRes.data.tags) ? tagsRes.data.tags : [];
    tagBox.replaceChildren(...tags.map((tag) => el("label", {},
      el("input", { type: "checkbox", value: tag, checked: chosen.has(tag) }), tag)));

    function query(page) {
      const q = new URLSearchParams();
      for (const [name, id] of Object.entries(fields)) {
        const value = document.getElementById(id).value.trim();
        if (value && !(name === "sort" && value === "relevance")) q.set(name, value);
      }
      const picked = [...tagBox.querySelectorAll("input:checked")].map((box) => box.value);
      if (picked.length) q.set("tags", picked.join(","));
      if (document.getElementById("in-stock").checked) q.set("in_stock", "1");
      if (page > 1) q.set("page", String(page));
      return q;
    }

    async function load(page) {
      const q = query(page);
      history.replaceState(null, "", "search.html" + (q.toString() ? "?" + q : ""));
      if (!q.get("q") && !q.get("tags")) {
        products.replaceChildren(el("p", { class: "muted" }, "Type what you are looking for."));
        count.textContent = "";
        pager.replaceChildren();
        banner.hidden = true;
        return;
      }
      q.set("size", String(PAGE_SIZE));
      products.replaceChildren(el("p", { class: "muted" }, "Searching…"));
      const res = await api("GET", "/search?" + q);
      if (res.status === 400 && res.data && res.data.error) return fail(products, res.data.error);
      if (!res.data || !Array.isArray(res.data.items)) {
        banner.hidden = true;
        count.textContent = "";
        return fail(products, "Search is not available right now.");
      }
      banner.hidden = !res.data.partial;
      const total = typeof res.data.total === "number" ? res.data.total : res.data.items.length;
      products.replaceChildren(...(res.data.items.length ? res.data.items.map(Shop.productTile)
        : [el("p", { class: "muted" }, "No socks match this search.")]));
      const first = total ? (page - 1) * PAGE_SIZE + 1 : 0;
      count.textContent = `${first}–${Math.min(page * PAGE_SIZE, total)} of ${total} socks`;
      const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
      const link = (n, text) => el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); load(n); } }, text);
      pager.replaceChildren(
        page > 1 ? link(page - 1, "‹ Prev") : el("span", { class: "disabled" }, "‹ Prev"),
        el("span", { class: "current", "aria-current": "page" }, `Page ${page} of ${pages}`),
        page < pages ? link(page + 1, "Next ›") : el("span", { class: "disabled" }, "Next ›"));
    }

    form.addEventListener("submit", (ev) => { ev.preventDefault(); load(1); });
    load(Math.max(1, parseInt(state.get("page") || "1", 10) || 1));
  }

  /* ---- detail ----------------------------------------------------------------------------- */
  async function detail() {
    const box = document.getElementById("product");
    const id = Shop.param("id");
    if (!id) return fail(box, "No sock chosen: pick one from the catalogue.");
    const res = await api("GET", "/catalogue/" + encodeURIComponent(id));
    const item = res.data;
    if (!item || typeof item !== "object" || !item.id) return fail(box, "We could not find that sock.");
    document.title = item.name + " — Sockdrill Socks";
    document.getElementById("crumb-name").textContent = item.name;
    const images = (item.imageUrl || []).filter(Boolean);
    const main = el("img", { class: "main-img", src: images[0] || "", alt: item.name });
    const thumbs = images.map((src, i) => el("button", { type: "button", class: i === 0 ? "active" : null,
      "aria-label": "Show picture " + (i + 1), onclick: (ev) => {
        main.src = src;
        for (const b of ev.currentTarget.parentNode.children) b.classList.remove("active");
        ev.currentTarget.classList.add("active");
      } }, el("img", { src, alt: "" })));
    const stock = Number(item.count) || 0;
    const button = el("button", { class: "btn btn-primary btn-lg", type: "button", id: "add-to-cart",
      onclick: async () => {
        button.disabled = true;
        try { await Shop.addToCart(item.id); } finally { button.disabled = false; }
      } }, "Add to cart");
    box.replaceChildren(
      el("div", { class: "gallery" }, main, images.length > 1 ? el("div", { class: "thumbs" }, thumbs) : null),
      el("div", { class: "info" },
        el("h1", {}, item.name),
        el("div", { class: "price" }, money(item.price)),
        el("div", { class: "stock " + (stock > 0 ? "ok" : "out") }, stock > 0 ? `In stock (${stock} left)` : "Out of stock"),
        el("p", { class: "desc" }, item.description || ""),
        el("div", { class: "tags" }, (item.tag || []).map((t) =>
          el("a", { class: "chip", href: "category.html?tags=" + encodeURIComponent(t) }, t))),
        button));
    const firstTag = (item.tag || [])[0];
    if (firstTag) {
      const rel = await api("GET", "/catalogue?sort=id&size=3&tags=" + encodeURIComponent(firstTag));
      const others = Array.isArray(rel.data) ? rel.data.filter((s) => s.id !== item.id) : [];
      if (others.length) {
        document.getElementById("related").replaceChildren(...others.slice(0, 3).map(Shop.productTile));
        document.getElementById("related-section").hidden = false;
      }
    }
  }

  /* ---- basket + checkout ------------------------------------------------------------------- */
  async function basket() {
    const linesBox = document.getElementById("basket-lines");
    const details = document.getElementById("checkout-details");
    const orderError = document.getElementById("order-error");
    const placeButton = document.getElementById("place-order");
    const updateButton = document.getElementById("update-basket");
    let lines = [];
    // Delivery options priced for the saved address (shipping-rates); null where the shop prices delivery flat.
    let delivery = null;
    let chosen = null;

    function shippingCost() {
      if (!delivery) return Shop.SHIPPING;
      const option = delivery.options.find((o) => o.service === chosen);
      return option ? Number(option.price) : 0;
    }

    function totals() {
      const subtotal = lines.reduce((sum, l) => sum + l.quantity * l.unitPrice, 0);
      document.getElementById("subtotal").textContent = money(subtotal);
      document.getElementById("shipping").textContent = delivery && !chosen ? "—" : money(shippingCost());
      document.getElementById("total").textContent = money(subtotal + shippingCost());
      placeButton.disabled = lines.length === 0 || (delivery !== null && !chosen);
      updateButton.disabled = lines.length === 0;
    }

    async function loadLines() {
      const res = await api("GET", "/cart");
      if (!Array.isArray(res.data)) {
        lines = [];
        totals();
        return fail(linesBox, "Your basket could not be loaded: " + Shop.errorText(res.data, "error " + res.status));
      }
      lines = res.data.map((l) => ({ itemId: l.itemId, quantity: Number(l.quantity) || 0,
        unitPrice: Number(l.unitPrice) || 0 }));
      totals();
      if (!lines.length) {
        linesBox.replaceChildren(el("div", { class: "empty" }, el("p", {}, "Your basket is empty."),
          el("a", { class: "btn btn-primary", href: "category.html" }, "Find some socks")));
        return;
      }
      const socks = await Promise.all(lines.map((l) => Shop.sock(l.itemId)));
      linesBox.replaceChildren(el("table", { class: "lines" },
        el("thead", {}, el("tr", {}, el("th", {}, "Product"), el("th", { class: "num" }, "Price"),
          el("th", { class: "num" }, "Quantity"), el("th", { class: "num" }, "Total"), el("th", {}, ""))),
        el("tbody", {}, lines.map((line, i) => {
          const s = socks[i];
          const name = s ? s.name : line.itemId;
          const href = "detail.html?id=" + encodeURIComponent(line.itemId);
          return el("tr", { dataset: { item: line.itemId } },
            el("td", {}, el("div", { class: "prod" },
              s && s.imageUrl && s.imageUrl[0] ? el("img", { class: "thumb", src: s.imageUrl[0], alt: "" }) : null,
              el("a", { href }, name))),
            el("td", { class: "num" }, money(line.unitPrice)),
            el("td", { class: "num" }, el("input", { type: "number", min: "0", step: "1", value: line.quantity,
              "aria-label": "Quantity of " + name, dataset: { item: line.itemId } })),
            el("td", { class: "num" }, money(line.quantity * line.unitPrice)),
            el("td", { class: "num" }, el("button", { class: "btn-icon", type: "button", title: "Remove",
              "aria-label": "Remove " + name, onclick: () => removeLine(line.itemId) }, "×")));
        }))));
    }

    async function removeLine(itemId) {
      const res = await api("DELETE", "/cart/" + encodeURIComponent(itemId));
      if (res.status >= 300) Shop.toast("Could not remove the item (error " + res.status + ")");
      await loadLines();
      Shop.refreshCart();
    }

    updateButton.addEventListener("click", async () => {
      updateButton.disabled = true;
      for (const input of linesBox.querySelectorAll("input[type=number]")) {
        const line = lines.find((l) => l.itemId === input.dataset.item);
        const quantity = parseInt(input.value, 10);
        if (!line || isNaN(quantity) || quantity < 0 || quantity === line.quantity) continue;
        const res = quantity === 0
          ? await api("DELETE", "/cart/" + encodeURIComponent(line.itemId))
          : await api("POST", "/cart/update", { id: line.itemId, quantity });
        if (res.status >= 300) Shop.toast("Could not update the basket (error " + res.status + ")");
      }
      await loadLines();
      Shop.refreshCart();
      Shop.toast("Basket updated");
    });

    function detailBox(title, ...content) {
      return el("div", { class: "detail-box" }, el("h4", {}, title), ...content);
    }

    async function loadDetails() {
      if (!Shop.isLoggedIn()) {
        details.replaceChildren(detailBox("Checkout", el("p", {}, "Log in or register to place your order."),
          el("button", { class: "btn", type: "button", onclick: () => Shop.openLogin() }, "Log in")));
        return;
      }
      const [addr, card] = await Promise.all([api("GET", "/address"), api("GET", "/card")]);
      const nodes = [];
      const a = addr.data;
      if (a && typeof a === "object" && a.street !== undefined) {
        nodes.push(detailBox("Deliver to", el("div", { id: "delivery-address" },
          `${a.number || ""} ${a.street || ""}`.trim(), el("br"), `${a.city || ""} ${a.postcode || ""}`.trim(),
          el("br"), a.country || "")));
      } else {
        nodes.push(detailBox("Deliver to", addressForm()));
      }
      const options = lines.length && a && typeof a === "object" && a.street !== undefined
        ? await api("POST", "/shipping-options") : null;
      delivery = null;
      chosen = null;
      if (options && options.status === 200 && options.data && Array.isArray(options.data.options)) {
        delivery = options.data;
        chosen = delivery.options.length ? delivery.options[0].service : null;
        nodes.push(detailBox("Delivery", delivery.options.length
          ? el("div", { id: "delivery-options" }, delivery.options.map((o) => el("label", { class: "delivery-option" },
            el("input", { type: "radio", name: "delivery", value: o.service, checked: o.service === chosen,
              onchange: () => { chosen = o.service; totals(); } }),
            ` ${o.service} (${o.days} day${o.days === 1 ? "" : "s"}) ${money(Number(o.price))}`)))
          : el("p", { id: "delivery-options" }, "No delivery option to this address.")));
      } else if (options && options.status >= 400 && options.status !== 502) {
        // (502: this shop prices delivery flat, no rating service runs.) Anything else: no option can be chosen.
        delivery = { options: [] };
        nodes.push(detailBox("Delivery", el("p", { id: "delivery-options" }, "Delivery prices are unavailable: "
          + Shop.errorText(options.data, "error " + options.status))));
      }
      totals();
      const c = card.data;
      if (c && typeof c === "object" && c.number) {
        nodes.push(detailBox("Pay with", el("div", { id: "payment-card" }, "Card ending in " + c.number)));
      } else {
        nodes.push(detailBox("Pay with", cardForm()));
      }
      details.replaceChildren(...nodes);
    }

    function smallForm(id, inputs, submitText, send) {
      const error = el("div", { class: "alert alert-error", hidden: true });
      return el("form", { id, onsubmit: async (ev) => {
        ev.preventDefault();
        const values = {};
        for (const input of ev.currentTarget.querySelectorAll("input")) values[input.name] = input.value.trim();
        if (Object.values(values).some((v) => !v)) {
          error.textContent = "Please fill in every field.";
          error.hidden = false;
          return;
        }
        const res = await send(values);
        if (res.status === 200) return loadDetails();
        error.textContent = Shop.errorText(res.data, "error " + res.status);
        error.hidden = false;
      } }, inputs.map(([name, label]) => [el("label", { for: id + "-" + name }, label),
        el("input", { id: id + "-" + name, name, type: "text" })]), error,
      el("button", { class: "btn btn-block", type: "submit" }, submitText));
    }

    function addressForm() {
      return smallForm("address-form", [["number", "House number"], ["street", "Street"], ["city", "City"],
        ["postcode", "Postcode"], ["country", "Country"]], "Save address", (v) => api("POST", "/addresses", v));
    }

    function cardForm() {
      return smallForm("card-form", [["longNum", "Card number"], ["expires", "Expires (MM/YY)"], ["ccv", "CCV"]],
        "Save card", (v) => api("POST", "/cards", v));
    }

    placeButton.addEventListener("click", async () => {
      orderError.hidden = true;
      if (!Shop.isLoggedIn()) {
        Shop.openLogin("Log in to place your order.");
        return;
      }
      placeButton.disabled = true;
      placeButton.textContent = "Placing order…";
      const res = await api("POST", "/orders", delivery && chosen ? { deliveryService: chosen } : undefined);
      if (res.status === 201) {
        await api("DELETE", "/cart");
        location.href = "customer-orders.html";
        return;
      }
      placeButton.disabled = false;
      placeButton.textContent = "Place order";
      orderError.textContent = "Error placing order. " + Shop.errorText(res.data, "The shop answered " + res.status + ".");
      orderError.hidden = false;
    });

    // The delivery options are priced for the basket: the lines first.
    document.addEventListener("shop:account", async () => { await loadLines(); await loadDetails(); });
    await loadLines();
    await loadDetails();
  }

  /* ---- my orders --------------------------------------------------------------------------- */
  function orderId(order) {
    const href = order && order._links && order._links.self ? order._links.self.href : "";
    return href.split("/").filter(Boolean).pop() || "";
  }

  async function orders() {
    const box = document.getElementById("orders");
    async function load() {
      if (!Shop.isLoggedIn()) return loginPrompt(box, "Log in to see your orders.");
      const res = await api("GET", "/orders");
      if (res.status !== 201 && res.status !== 200) {
        return fail(box, "Your orders could not be loaded: " + Shop.errorText(res.data, "error " + res.status));
      }
      const list = Array.isArray(res.data) ? res.data.slice() : [];
      if (!list.length) {
        return box.replaceChildren(el("div", { class: "empty" }, el("p", {}, "You have not ordered anything yet."),
          el("a", { class: "btn btn-primary", href: "category.html" }, "Start shopping")));
      }
      list.sort((a, b) => String(b.date || "").localeCompare(String(a.date || "")));
      box.replaceChildren(el("table", { class: "lines", id: "orders-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Order"), el("th", {}, "Date"), el("th", {}, "Status"),
          el("th", { class: "num" }, "Items"), el("th", { class: "num" }, "Total"), el("th", {}, ""))),
        el("tbody", {}, list.map((o) => {
          const id = orderId(o);
          const count = (o.items || []).reduce((sum, i) => sum + (Number(i.quantity) || 0), 0);
          const href = "customer-order.html?order=" + encodeURIComponent(id);
          return el("tr", { dataset: { order: id } },
            el("td", {}, el("a", { href }, "#" + id.slice(-8))),
            el("td", {}, Shop.formatDate(o.date)),
            el("td", { class: "order-status" }, o.status ? String(o.status) : ""),
            el("td", { class: "num" }, String(count)),
            el("td", { class: "num" }, money(o.total)),
            el("td", { class: "num" }, el("a", { class: "btn", href }, "View")));
        }))));
    }
    document.addEventListener("shop:account", load);
    load();
  }

  /* ---- one order --------------------------------------------------------------------------- */
  async function order() {
    const box = document.getElementById("order");
    const id = Shop.param("order");
    if (!id) return fail(box, "No order chosen.");
    document.getElementById("crumb-order").textContent = "Order #" + id.slice(-8);
    const res = await api("GET", "/orders/" + encodeURIComponent(id));
    const o = res.data;
    if (res.status !== 200 || !o || typeof o !== "object") return fail(box, "We could not find that order.");
    const items = o.items || [];
    const socks = await Promise.all(items.map((i) => Shop.sock(i.itemId)));
    const subtotal = items.reduce((sum, i) => sum + (Number(i.quantity) || 0) * (Number(i.unitPrice) || 0), 0);
    const c = o.customer || {};
    const a = o.address || {};
    const card = o.card || {};
    // Where the parcel is, as the warehouse knows it (a page that cannot ask still shows the order).
    let parcel = null;
    if (o.trackingId) {
      const t = await api("GET", "/tracking/" + encodeURIComponent(o.trackingId));
      parcel = el("div", { class: "detail-box", id: "parcel" }, el("h4", {}, "Parcel"),
        t.status === 200 && t.data ? (t.data.status === "delivered"
          ? "Delivered " + Shop.formatDate(new Date(t.data.at * 1000).toISOString()) : "On its way")
          : "Tracking is unavailable right now.");
    }
    box.replaceChildren(
      el("div", { class: "order-head" },
        el("div", {}, el("h1", {}, "Order #" + id.slice(-8)),
          el("p", { class: "muted" }, "Placed " + Shop.formatDate(o.date))),
        el("span", { class: "status" }, o.status ? String(o.status) : "Placed")),
      el("div", { class: "order-grid" },
        el("section", { class: "card-panel" }, el("table", { class: "lines" },
          el("thead", {}, el("tr", {}, el("th", {}, "Product"), el("th", { class: "num" }, "Quantity"),
            el("th", { class: "num" }, "Price"), el("th", { class: "num" }, "Total"))),
          el("tbody", {}, items.map((i, n) => el("tr", {},
            el("td", {}, el("div", { class: "prod" },
              socks[n] && socks[n].imageUrl ? el("img", { class: "thumb", src: socks[n].imageUrl[0], alt: "" }) : null,
              el("a", { href: "detail.html?id=" + encodeURIComponent(i.itemId) }, socks[n] ? socks[n].name : i.itemId))),
            el("td", { class: "num" }, String(i.quantity)),
            el("td", { class: "num" }, money(i.unitPrice)),
            el("td", { class: "num" }, money((Number(i.quantity) || 0) * (Number(i.unitPrice) || 0))))))),
          el("dl", { class: "totals", style: "margin-top:1rem" },
            el("dt", {}, "Subtotal"), el("dd", {}, money(subtotal)),
            el("dt", {}, o.delivery ? `Shipping (${o.delivery.service})` : "Shipping"),
            el("dd", {}, money(o.delivery ? Number(o.delivery.price) : Shop.SHIPPING)),
            el("dt", { class: "grand" }, "Total"), el("dd", { class: "grand" }, money(o.total)))),
        el("aside", { class: "card-panel" },
          el("div", { class: "detail-box" }, el("h4", {}, "Customer"), `${c.firstName || ""} ${c.lastName || ""}`.trim()),
          el("div", { class: "detail-box" }, el("h4", {}, "Deliver to"),
            `${a.number || ""} ${a.street || ""}`.trim(), el("br"), `${a.city || ""} ${a.postcode || ""}`.trim(),
            el("br"), a.country || ""),
          card.longNum ? el("div", { class: "detail-box" }, el("h4", {}, "Paid with"),
            "Card ending in " + String(card.longNum).slice(-4)) : null,
          o.shipment && o.shipment.name !== undefined ? el("div", { class: "detail-box" }, el("h4", {}, "Shipment"),
            "Shipping for customer " + o.shipment.name) : null,
          parcel)));
  }

  /* ---- my profile (ours: no upstream page) ------------------------------------------------------ */
  async function profile() {
    const box = document.getElementById("profile");
    const FIELDS = [["firstName", "First name"], ["lastName", "Last name"], ["email", "Email"], ["phone", "Phone"]];
    const ADDRESS = [["number", "House number"], ["street", "Street"], ["city", "City"], ["postcode", "Postcode"],
      ["country", "Country"]];
    let version = null;

    function input(id, name, label, value) {
      return [el("label", { for: id }, label), el("input", { id, name, type: "text", value: value || "" })];
    }

    async function load(notice) {
      if (!Shop.isLoggedIn()) return loginPrompt(box, "Log in to see and change your profile.");
      const [res, cards] = await Promise.all([api("GET", "/profile"), api("GET", "/cards")]);
      if (res.status !== 200) return fail(box, Shop.errorText(res.data, "Your profile could not be loaded."));
      const p = res.data;
      version = p.version;
      const owned = cards.status === 200 && cards.data && cards.data._embedded ? cards.data._embedded.card || [] : [];
      const a = p.address || {};
      const status = el("div", { id: "profile-status", class: "alert", hidden: !notice }, notice || "");
      const cardSelect = el("select", { id: "profile-defaultCard", name: "defaultCard" },
        el("option", { value: "" }, "No default card"),
        ...owned.map((c) => el("option", { value: c.id, selected: c.id === p.defaultCard ? true : null },
          "Card ending in " + String(c.longNum).slice(-4))));
      const form = el("form", { id: "profile-form", onsubmit: save },
        FIELDS.map(([name, label]) => input("profile-" + name, name, label, p[name])),
        el("h4", {}, "Home address"),
        ADDRESS.map(([name, label]) => input("profile-address-" + name, "address." + name, label, a[name])),
        el("label", { for: "profile-defaultCard" }, "Default card"), cardSelect,
        status,
        el("button", { class: "btn btn-primary btn-block", type: "submit", id: "profile-save" }, "Save profile"));
      box.replaceChildren(form);
    }

    async function save(ev) {
      ev.preventDefault();
      const form = ev.currentTarget;
      const status = document.getElementById("profile-status");
      const body = { version };
      const address = {};
      for (const node of form.querySelectorAll("input")) {
        if (node.name.startsWith("address.")) address[node.name.slice(8)] = node.value.trim();
        else body[node.name] = node.value.trim();
      }
      if (Object.values(address).some((v) => v)) body.address = address;
      body.defaultCard = form.querySelector("select").value || null;
      const res = await api("PATCH", "/profile", body);
      if (res.status === 200) {
        version = res.data.version;
        return load("Profile saved.");
      }
      status.className = "alert alert-error";
      status.hidden = false;
      if (res.status === 409) {
        status.textContent = "Your profile was changed elsewhere meanwhile. Reload it, then make your change again.";
      } else {
        const fields = res.data && res.data.fields ? Object.values(res.data.fields).join(" ") : "";
        status.textContent = fields || Shop.errorText(res.data, "Your profile was not saved (" + res.status + ").");
      }
    }

    document.addEventListener("shop:account", () => load());
    await load();
  }

  /* ---- the admin panel (ours: staff change price, description and stock) ------------------------ */
  async function admin() {
    const box = document.getElementById("admin");
    let page = 1;

    function loginForm(message) {
      const error = el("div", { class: "alert alert-error", id: "admin-error", hidden: !message }, message || "");
      box.replaceChildren(el("form", { id: "admin-login", onsubmit: async (ev) => {
        ev.preventDefault();
        const body = { username: ev.currentTarget.username.value.trim(), password: ev.currentTarget.password.value };
        const res = await api("POST", "/admin/login", body);
        if (res.status === 200) return list();
        loginForm(Shop.errorText(res.data, "Staff login refused."));
      } },
        el("label", { for: "admin-username" }, "Staff user name"),
        el("input", { id: "admin-username", name: "username", type: "text", autocomplete: "username" }),
        el("label", { for: "admin-password" }, "Password"),
        el("input", { id: "admin-password", name: "password", type: "password", autocomplete: "current-password" }),
        error, el("button", { class: "btn btn-primary btn-block", type: "submit" }, "Log in")));
    }

    function row(sock) {
      const price = el("input", { type: "number", step: "0.01", min: "0.01", value: String(sock.price), name: "price",
        "aria-label": "Price of " + sock.name });
      const count = el("input", { type: "number", step: "1", min: "0", value: String(sock.count), name: "count",
        "aria-label": "Stock of " + sock.name });
      const desc = el("input", { type: "text", value: sock.description || "", name: "description",
        "aria-label": "Description of " + sock.name });
      const status = el("span", { class: "muted" });
      const save = el("button", { class: "btn", type: "button", onclick: async () => {
        save.disabled = true;
        const res = await api("PATCH", "/admin/products/" + encodeURIComponent(sock.id),
          { price: Number(price.value), count: Number(count.value), description: desc.value });
        save.disabled = false;
        status.textContent = res.status === 200 ? "Saved." : Shop.errorText(res.data, "Not saved (" + res.status + ").");
      } }, "Save");
      return el("tr", { dataset: { id: sock.id } }, el("td", {}, sock.name), el("td", {}, price), el("td", {}, count),
        el("td", {}, desc), el("td", {}, save, " ", status));
    }

    async function list() {
      const res = await api("GET", "/admin/products?size=20&page=" + page);
      if (res.status === 401) return loginForm();
      if (res.status !== 200 || !Array.isArray(res.data)) return fail(box, Shop.errorText(res.data, "Products could not be loaded."));
      box.replaceChildren(
        el("table", { class: "table", id: "admin-products" },
          el("thead", {}, el("tr", {}, ["Sock", "Price", "Stock", "Description", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, res.data.map(row))),
        el("div", { class: "pager" },
          el("button", { class: "btn", type: "button", disabled: page === 1 ? true : null, onclick: () => { page -= 1; list(); } }, "Previous"),
          el("span", {}, " Page " + page + " "),
          el("button", { class: "btn", type: "button", disabled: res.data.length < 20 ? true : null, onclick: () => { page += 1; list(); } }, "Next"),
          el("button", { class: "btn", type: "button", id: "admin-logout", onclick: async () => {
            await api("POST", "/admin/logout");
            loginForm();
          } }, "Log out")));
    }

    await list();
  }

  const pages = { home, category, search, detail, basket, orders, order, profile, admin };
  document.addEventListener("DOMContentLoaded", () => {
    const run = pages[document.body.dataset.page];
    if (run) run();
  });
})();
