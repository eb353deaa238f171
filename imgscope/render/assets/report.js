// imgscope HTML report: draws the page from the JSON embedded in #imgscope-data.
// Inlined into every page; no network, no eval, text only ever set with textContent.
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var doc = JSON.parse(document.getElementById("imgscope-data").textContent);
  var R = doc.report;
  var app = document.getElementById("app");

  // ------------------------------------------------------------------ helpers
  // Names come from the image, which may be hostile: controls, bidi overrides and bytes that were
  // not UTF-8 (lone surrogates in the JSON) are shown as escapes, as on the console (\x1b, \n, \xe9).
  var UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|(?<![\ud800-\udbff])[\udc80-\udcff]/g;
  function shown(text) {
    return String(text).replace(UNPRINTABLE, function (c) {
      var code = c.charCodeAt(0);
      if (code >= 0xdc80 && code <= 0xdcff) return "\\x" + (code - 0xdc00).toString(16);
      if (c === "\n") return "\\n";
      if (c === "\t") return "\\t";
      if (c === "\r") return "\\r";
      return code < 0x100 ? "\\x" + ("0" + code.toString(16)).slice(-2) : "\\u" + ("000" + code.toString(16)).slice(-4);
    });
  }
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (attrs[k] === null || attrs[k] === undefined) continue;
        if (k === "text") node.textContent = shown(attrs[k]);
        else node.setAttribute(k, k === "title" ? shown(attrs[k]) : String(attrs[k]));
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(shown(c)) : c);
    }
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS(SVGNS, tag);
    for (var k in attrs) node.setAttribute(k, String(attrs[k]));
    return node;
  }
  function size(n) {
    if (n === null || n === undefined) return "-";
    var sign = n < 0 ? "-" : "";
    var v = Math.abs(n);
    var units = ["B", "kB", "MB", "GB", "TB"];
    for (var i = 0; i < units.length; i++) {
      if (v < 1000 || i === units.length - 1) return sign + (i === 0 ? String(Math.round(v)) : v.toFixed(1)) + " " + units[i];
      v /= 1000;
    }
  }
  function signed(n) { return (n > 0 ? "+" : "") + size(n); }
  function pct(x) { return x === null || x === undefined ? "-" : (x * 100).toFixed(1) + "%"; }
  function num(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }
  function layerColour(i) { return "hsl(" + ((i * 137.508 + 200) % 360).toFixed(1) + ",62%,52%)"; }
  function section(title) {
    var s = el("section", null, el("h2", { text: title }));
    app.appendChild(s);
    return s;
  }
  function table(headers, rows) {
    var head = el("tr");
    headers.forEach(function (h) {
      var name = typeof h === "string" ? h : h[0];
      head.appendChild(el("th", { text: name, "class": typeof h === "string" ? null : h[1] }));
    });
    var body = el("tbody");
    rows.forEach(function (r) { body.appendChild(r); });
    return el("table", null, el("thead", null, head), body);
  }
  function td(text, cls, title) { return el("td", { text: text, "class": cls, title: title }); }
  function cards(items) {
    var box = el("div", { "class": "cards" });
    items.forEach(function (it) {
      box.appendChild(el("div", { "class": "card" }, el("div", { "class": "k", text: it[0] }), el("div", { "class": "v", text: it[1] })));
    });
    app.appendChild(box);
  }
  function badge(text, cls) { return el("span", { "class": "badge " + (cls || text), text: text }); }
  function header(kind, image, extra) {
    app.appendChild(el("h1", { text: "imgscope " + kind + ": " + (image.tags && image.tags.length ? image.tags[0] : image.reference) }));
    var bits = [image.reference, image.platform, image.id ? image.id.slice(0, 19) : null].concat(extra || []);
    app.appendChild(el("p", { "class": "sub", text: bits.filter(Boolean).join("  \u00b7  ") }));
  }
  function warnings(list) {
    if (!list || !list.length) return;
    var s = section("Warnings");
    var ul = el("ul");
    list.forEach(function (w) { ul.appendChild(el("li", { "class": "warn", text: w })); });
    s.appendChild(ul);
  }
  var tip = el("div", { "class": "tooltip", id: "tooltip", role: "tooltip" });
  document.body.appendChild(tip);
  function showTip(ev, lines) {
    while (tip.firstChild) tip.removeChild(tip.firstChild);
    lines.forEach(function (line, i) {
      tip.appendChild(i === 0 ? el("b", { text: line }) : el("div", { text: line }));
    });
    tip.style.display = "block";
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 4) x = Math.max(4, ev.clientX - w - 14);
    if (y + h > window.innerHeight - 4) y = Math.max(4, ev.clientY - h - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hideTip() { tip.style.display = "none"; }

  // ------------------------------------------------------------------ treemap
  // Squarified layout (Bruls, Huizing, van Wijk): rows of items laid along the shorter side.
  function squarify(items, x, y, w, h) {
    var out = [];
    var total = 0;
    items.forEach(function (it) { total += it.v; });
    if (total <= 0 || w <= 0 || h <= 0) {
      items.forEach(function (it) { out.push({ it: it, x: x, y: y, w: 0, h: 0 }); });
      return out;
    }
    var scale = (w * h) / total;
    var rest = items.map(function (it) { return { it: it, a: it.v * scale }; });
    function worst(row, sum, side) {
      var m = 0;
      for (var i = 0; i < row.length; i++) {
        var a = row[i].a;
        var r = Math.max((side * side * a) / (sum * sum), (sum * sum) / (side * side * a));
        if (r > m) m = r;
      }
      return m;
    }
    var start = 0;
    while (start < rest.length) {
      var side = Math.min(w, h);
      var row = [rest[start]], sum = rest[start].a, best = worst(row, sum, side), i = start + 1;
      while (i < rest.length) {
        var next = row.concat([rest[i]]);
        var wv = worst(next, sum + rest[i].a, side);
        if (wv > best) break;
        row = next; sum += rest[i].a; best = wv; i++;
      }
      // The row is a strip along the shorter side: on the left when the space is wide, on top when tall.
      var wide = w >= h;
      var thick = sum / (wide ? h : w) || 0;
      var off = wide ? y : x;
      for (var j = 0; j < row.length; j++) {
        var len = thick > 0 ? row[j].a / thick : 0;
        out.push(wide ? { it: row[j].it, x: x, y: off, w: thick, h: len } : { it: row[j].it, x: off, y: y, w: len, h: thick });
        off += len;
      }
      if (wide) { x += thick; w = Math.max(0, w - thick); } else { y += thick; h = Math.max(0, h - thick); }
      start = i;
    }
    return out;
  }

  // Bytes of each node per layer, for the step filter: files from "l", folded nodes from "b".
  function prepareTree(node) {
    var by = {};
    if (node.c) {
      node.c.forEach(function (child) {
        var sub = prepareTree(child);
        for (var k in sub) by[k] = (by[k] || 0) + sub[k];
      });
    } else if (node.b) {
      for (var k2 in node.b) by[k2] = node.b[k2];
    } else {
      by[String(node.l)] = node.s;
    }
    node.by = by;
    return by;
  }
  function dominant(node) {
    var best = null, bytes = -1;
    for (var k in node.by) if (node.by[k] > bytes) { bytes = node.by[k]; best = Number(k); }
    return best;
  }

  var MAX_RECTS = 6000, HEADER = 15, PAD = 2;

  // Draws ``view`` (the root, or the directory zoomed into, at ``viewPath``); a click on a rectangle
  // calls onZoom with the top-level directory of the view that holds it.
  function drawTreemap(box, view, viewPath, layerFilter, stepName, onZoom) {
    while (box.firstChild) box.removeChild(box.firstChild);
    var width = Math.max(320, Math.floor(box.clientWidth || 960));
    var height = Math.max(260, Math.min(620, Math.round(width * 0.5)));
    var root = svg("svg", { "class": "treemap", viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img" });
    root.appendChild(svg("title", { })).textContent = "Final file system by size, coloured by the step that last wrote each file";
    var drawn = [];
    function value(node) { return layerFilter === null ? node.s : node.by[String(layerFilter)] || 0; }
    function label(text, x, y, w, onFile) {
      var max = Math.floor((w - 6) / 6.6);
      if (max < 3) return;
      var clean = shown(text);
      var t = clean.length > max ? clean.slice(0, max - 1) + "\u2026" : clean;
      var node = svg("text", { x: (x + 3).toFixed(1), y: (y + 11).toFixed(1), "class": onFile ? "on-file" : "" });
      node.textContent = t;
      root.appendChild(node);
    }
    function rect(node, path, r, top, depth, topIndex) {
      var index = drawn.length;
      var kind = node.c ? "dir" : node.f ? "folded" : "file";
      var attrs = {
        x: r.x.toFixed(2), y: r.y.toFixed(2), width: Math.max(0, r.w).toFixed(2), height: Math.max(0, r.h).toFixed(2),
        "class": (top ? "tm-top " : "") + kind, "data-i": drawn.length
      };
      if (top) attrs["data-path"] = path;
      var bigEnough = r.w >= 2 * PAD + 4 && r.h >= HEADER + PAD + 4 && drawn.length < MAX_RECTS && depth < 24;
      if (kind === "file") attrs.fill = layerColour(node.l);
      else if (kind === "folded" || !bigEnough) attrs.fill = layerColour(layerFilter === null ? dominant(node) : layerFilter);
      root.appendChild(svg("rect", attrs));
      drawn.push({ node: node, path: path, top: top ? index : topIndex });
      if (kind === "dir" && bigEnough) {
        if (r.w > 40) label(node.n + "/", r.x, r.y + 1, r.w, false);
        layout(node, path, { x: r.x + PAD, y: r.y + HEADER, w: r.w - 2 * PAD, h: r.h - HEADER - PAD }, false, depth + 1, top ? index : topIndex);
      } else if (kind !== "dir" && r.w > 46 && r.h > 15) {
        label(node.n, r.x, r.y + 1, r.w, true);
      }
    }
    function layout(node, path, r, top, depth, topIndex) {
      var items = [];
      (node.c || []).forEach(function (child) {
        var v = value(child);
        if (v > 0) items.push({ v: v, node: child });
      });
      items.sort(function (a, b) { return b.v - a.v; });
      squarify(items, r.x, r.y, r.w, r.h).forEach(function (p) {
        var childPath = (path === "/" ? "" : path) + "/" + p.it.node.n;
        if (top || drawn.length < MAX_RECTS) rect(p.it.node, p.it.node.f ? path : childPath, p, top, depth, topIndex);
      });
    }
    layout(view, viewPath, { x: 0, y: 0, w: width, h: height }, true, 0, 0);
    if (!drawn.length) {
      var empty = svg("text", { x: 16, y: 28, "class": "empty" });
      empty.textContent = layerFilter === null ? "The image has no file with bytes." :
        viewPath === "/" ? "Nothing this step wrote is in the final image: later steps removed or replaced all of it." :
        "Nothing this step wrote is in the final image under " + shown(viewPath) + ".";
      root.appendChild(empty);
    }
    root.addEventListener("mousemove", function (ev) {
      var target = ev.target;
      if (!target || target.tagName !== "rect") { hideTip(); return; }
      var d = drawn[Number(target.getAttribute("data-i"))];
      if (!d) { hideTip(); return; }
      var node = d.node;
      var lines = [];
      if (node.f) {
        lines.push(d.path + "  " + node.n);
        lines.push(size(value(node)) + (layerFilter === null ? "" : " from this step") + " in " + num(node.f) + " files");
      } else if (node.c) {
        lines.push(d.path + "/");
        lines.push("directory, " + size(value(node)) + (layerFilter === null ? "" : " from this step") + ", " + num(value(node)) + " bytes");
        var layers = Object.keys(node.by).map(Number).sort(function (a, b) { return node.by[b] - node.by[a]; });
        lines.push("written by layer" + (layers.length > 1 ? "s " : " ") + layers.slice(0, 6).join(", ") + (layers.length > 6 ? ", \u2026" : ""));
      } else {
        lines.push(d.path);
        lines.push(size(node.s) + " (" + num(node.s) + " bytes)");
        lines.push("layer " + node.l + ": " + stepName(node.l));
      }
      showTip(ev, lines);
    });
    root.addEventListener("mouseleave", hideTip);
    root.addEventListener("click", function (ev) {
      var target = ev.target;
      if (!target || target.tagName !== "rect") return;
      var d = drawn[Number(target.getAttribute("data-i"))];
      var top = d ? drawn[d.top] : null;
      if (top && top.node.c) { hideTip(); onZoom(top.node, top.path); }
    });
    box.appendChild(root);
    return drawn.length;
  }

  // ------------------------------------------------------------------ inspect
  function renderInspect() {
    var image = R.image, waste = R.waste || null;
    header("inspect", image, [image.created ? "created " + image.created : null]);
    var stepOf = {};
    R.history.forEach(function (h) { if (h.layer !== null && !(h.layer in stepOf)) stepOf[h.layer] = h; });
    function stepName(layer) { var h = stepOf[layer]; return h ? h.instruction : "(no history)"; }
    var wasteOf = {};
    if (waste) waste.steps.forEach(function (s) { wasteOf[s.layer] = s; });
    cards([
      ["size", size(image.size)],
      ["compressed", image.compressed_size === null ? "-" : size(image.compressed_size)],
      ["layers", num(image.layer_count)],
      ["steps", num(R.history.length)],
      ["files (final)", waste ? size(waste.visible) : "-"],
      ["wasted", waste ? size(waste.wasted_bytes) : "-"],
      ["efficiency", waste ? pct(waste.efficiency) : "-"]
    ]);

    var state = { layer: null };
    var redraws = [];
    function pick(layer) {
      state.layer = state.layer === layer ? null : layer;
      redraws.forEach(function (f) { f(); });
    }

    // Steps with per-layer bars.
    var steps = section("Steps");
    steps.id = "steps";
    steps.appendChild(el("div", { "class": "legend" },
      el("span", null, el("i", { "class": "add" }), "added"),
      el("span", null, el("i", { "class": "mod" }), "modified / metadata / re-shipped"),
      el("span", null, el("i", { "class": "rem" }), "removed (bytes hidden)"),
      el("span", null, el("i", { "class": "waste" }), "stored here, wasted in the final image"),
      el("span", { "class": "muted", text: "Click a step to show only the files it last wrote." })));
    var layersByIndex = {};
    R.layers.forEach(function (l) { layersByIndex[l.index] = l; });
    var maxBar = 1;
    R.layers.forEach(function (l) {
      var t = l.totals;
      var changed = t["added"].bytes + t["modified"].bytes + t["metadata"].bytes + t["re-shipped"].bytes + t["removed"].bytes;
      maxBar = Math.max(maxBar, changed);
    });
    var rows = [];
    R.history.forEach(function (h) {
      var layer = h.layer === null ? null : layersByIndex[h.layer];
      if (!layer) {
        rows.push(el("tr", { "class": "step empty" }, td(""), td(""), td(h.instruction, "instr", h.created_by), td("empty step", "muted nowrap"), td(""), td(""), td(""), td("")));
        return;
      }
      var t = layer.totals;
      var bar = el("div", { "class": "bar" });
      var rewritten = t["modified"].bytes + t["metadata"].bytes + t["re-shipped"].bytes;
      var wasted = wasteOf[layer.index] ? wasteOf[layer.index].wasted : 0;
      var parts = [["add", Math.max(0, t["added"].bytes - 0), "added " + size(t["added"].bytes)],
        ["mod", rewritten, "modified, metadata, re-shipped " + size(rewritten)],
        ["rem", t["removed"].bytes, "removed " + size(t["removed"].bytes)]];
      parts.forEach(function (p) {
        if (p[1] <= 0) return;
        var span = el("span", { "class": p[0], title: p[2] });
        span.style.width = (100 * p[1] / maxBar).toFixed(3) + "%";
        bar.appendChild(span);
      });
      var wbar = el("div", { "class": "bar" });
      if (wasted > 0) {
        var ws = el("span", { "class": "waste", title: "wasted " + size(wasted) });
        ws.style.width = (100 * wasted / maxBar).toFixed(3) + "%";
        wbar.appendChild(ws);
      }
      var row = el("tr", { "class": "step", "data-layer": layer.index, role: "button", tabindex: "0", "aria-pressed": "false" },
        el("td", null, el("span", { "class": "swatch" })),
        td(String(layer.index), "num"),
        td(h.instruction || "(no history)", "instr", h.created_by),
        td(size(layer.size), "num"),
        td(num(t["added"].count) + " / " + num(t["modified"].count + t["metadata"].count + t["re-shipped"].count) + " / " + num(t["removed"].count), "num"),
        el("td", { "class": "barcell" }, bar),
        td(wasted ? size(wasted) : "", "num"),
        el("td", { "class": "barcell" }, wbar));
      row.firstChild.firstChild.style.background = layerColour(layer.index);
      row.addEventListener("click", function () { pick(layer.index); });
      row.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(layer.index); } });
      rows.push(row);
    });
    steps.appendChild(table(["", ["layer", "num"], "step", ["size", "num"], ["+ / ~ / -", "num"], "changes", ["wasted", "num"], "waste"], rows));
    redraws.push(function () {
      rows.forEach(function (r) {
        if (r.hasAttribute("data-layer")) r.setAttribute("aria-pressed", String(Number(r.getAttribute("data-layer")) === state.layer));
      });
    });

    // Treemap.
    var tm = section("Final file system");
    tm.id = "treemap";
    var filterBar = el("div", { "class": "filter", id: "filter" });
    tm.appendChild(filterBar);
    var box = el("div", { "class": "tm-wrap" });
    tm.appendChild(box);
    var crumbs = el("div", { "class": "crumbs", id: "crumbs" });
    tm.insertBefore(crumbs, box);
    var tree = R.treemap;
    prepareTree(tree);
    var zoom = [{ node: tree, path: "/" }];  // the root, then each directory zoomed into
    function zoomTo(node, path) {
      var at = -1;
      zoom.forEach(function (z, i) { if (z.path === path) at = i; });
      if (at >= 0) zoom = zoom.slice(0, at + 1);
      else zoom.push({ node: node, path: path });
      drawAll();
    }
    function drawAll() {
      while (filterBar.firstChild) filterBar.removeChild(filterBar.firstChild);
      if (state.layer === null) {
        filterBar.appendChild(el("span", { text: "All " + size(tree.s) + " of files, by size; colour = the step that last wrote each file. Hover for details." }));
      } else {
        var bytes = tree.by[String(state.layer)] || 0;
        var clear = el("button", { type: "button", id: "show-all", text: "Show all steps" });
        clear.addEventListener("click", function () { pick(state.layer); });
        filterBar.appendChild(el("span", { "class": "swatch" }));
        filterBar.firstChild.style.background = layerColour(state.layer);
        filterBar.appendChild(el("span", { id: "filter-text", text: "Only the files layer " + state.layer + " last wrote (" + size(bytes) + "): " + stepName(state.layer) }));
        filterBar.appendChild(clear);
      }
      while (crumbs.firstChild) crumbs.removeChild(crumbs.firstChild);
      zoom.forEach(function (z, i) {
        var name = i === 0 ? "/" : z.node.n + "/";
        var crumb = el("button", { type: "button", "class": "crumb", "data-path": z.path, "aria-current": i === zoom.length - 1 ? "true" : null, text: name });
        crumb.addEventListener("click", function () { zoomTo(z.node, z.path); });
        crumbs.appendChild(crumb);
      });
      crumbs.appendChild(el("span", { "class": "muted", text: zoom.length > 1 ? "  Click a directory to go further, a name above to go back." : "  Click a directory to zoom in." }));
      var here = zoom[zoom.length - 1];
      drawTreemap(box, here.node, here.path, state.layer, stepName, zoomTo);
    }
    redraws.push(drawAll);

    // Largest files.
    var big = section("Largest files");
    big.id = "largest";
    var bigBody = el("div");
    big.appendChild(bigBody);
    function drawLargest() {
      while (bigBody.firstChild) bigBody.removeChild(bigBody.firstChild);
      var files = state.layer === null ? R.top_files : R.top_per_layer[String(state.layer)] || [];
      if (state.layer !== null) bigBody.appendChild(el("p", { "class": "muted", text: "Written last by layer " + state.layer + ": " + stepName(state.layer) }));
      if (!files.length) { bigBody.appendChild(el("p", { "class": "muted", text: "No file of the final image was last written by this step." })); return; }
      bigBody.appendChild(table([["size", "num"], "path", "type", ["layer", "num"]], files.map(function (f) {
        var r = el("tr", { "data-layer": f.layer }, td(size(f.size), "num", num(f.size) + " bytes"), td(f.path + (f.link ? " -> " + f.link : ""), "path"), td(f.type), td(String(f.layer), "num", stepName(f.layer)));
        return r;
      })));
    }
    redraws.push(drawLargest);

    // Waste ledger.
    if (waste) {
      var ws = section("Waste ledger");
      ws.id = "waste";
      ws.appendChild(el("p", { text: size(waste.wasted_bytes) + " of " + size(waste.total_stored) + " stored are not in the final image (efficiency " + pct(waste.efficiency) + ")." }));
      var causes = [];
      for (var cause in waste.by_cause) {
        var c = waste.by_cause[cause];
        if (c.bytes || c.copies) causes.push(el("tr", null, td(c.label), td(size(c.bytes), "num"), td(num(c.copies), "num")));
      }
      if (causes.length) ws.appendChild(table(["cause", ["bytes", "num"], ["copies", "num"]], causes));
      if (waste.top_paths.length) {
        ws.appendChild(el("h2", { text: "Paths that waste the most" }));
        ws.appendChild(table([["wasted", "num"], "path", ["stored", "num"], "layers"], waste.top_paths.map(function (p) {
          return el("tr", null, td(size(p.bytes_wasted), "num"), td(p.path, "path"), td(num(p.times_stored) + "\u00d7", "num"), td(p.layers.join(", ")));
        })));
      }
      if (waste.junk && waste.junk.length) {
        ws.appendChild(el("h2", { text: "Caches and junk left in the image" }));
        ws.appendChild(table([["bytes", "num"], "what", "path", ["files", "num"]], waste.junk.map(function (j) {
          return el("tr", null, td(size(j.bytes), "num"), td(j.description), td(j.path, "path"), td(num(j.files), "num"));
        })));
      }
    }
    warnings(R.warnings);
    redraws.forEach(function (f) { f(); });
    var pending = null;
    window.addEventListener("resize", function () {
      if (pending) clearTimeout(pending);
      pending = setTimeout(drawAll, 150);
    });
  }

  // ------------------------------------------------------------------ diff
  function side(s) {
    if (!s) return [td("", "instr"), td("", "num")];
    return [td((s.layer === null ? "" : "L" + s.layer + "  ") + (s.instruction || ""), "instr", s.created_by), td(size(s.size), "num")];
  }
  function deltaCell(n) {
    return td(n ? signed(n) : "0 B", "num delta " + (n > 0 ? "up" : n < 0 ? "down" : ""));
  }
  function renderDiff() {
    var a = R.a, b = R.b, s = R.summary;
    app.appendChild(el("h1", { text: "imgscope diff" }));
    app.appendChild(el("p", { "class": "sub", text: "A: " + a.reference + "  \u00b7  B: " + b.reference }));
    app.appendChild(el("div", { "class": "verdict " + (R.identical ? "ok" : "bad"), id: "verdict",
      text: R.identical ? "The images are identical." : "The images differ: " + signed(s.size_delta) + " (" + size(s.size_a) + " \u2192 " + size(s.size_b) + ")" }));
    cards([
      ["added", num(s.files.added.count) + " \u00b7 " + size(s.files.added.bytes)],
      ["removed", num(s.files.removed.count) + " \u00b7 " + size(s.files.removed.bytes)],
      ["modified", num(s.files.modified.count) + " \u00b7 " + size(s.files.modified.bytes)],
      ["metadata", num(s.files.metadata.count)],
      ["shared layers", num(s.shared_layers) + " \u00b7 " + size(s.shared_bytes)],
      ["config changes", num(s.config_changes)]
    ]);
    var st = section("Steps, aligned");
    st.id = "steps";
    st.appendChild(table(["A step", ["A size", "num"], "", "B step", ["B size", "num"], ["delta", "num"]], R.steps.map(function (p) {
      var cells = side(p.a).concat([el("td", null, badge(p.status))]).concat(side(p.b)).concat([deltaCell(p.delta)]);
      var r = el("tr", { "data-status": p.status });
      cells.forEach(function (c) { r.appendChild(c); });
      return r;
    })));

    var fs = section("Files");
    fs.id = "files";
    var kinds = ["all", "added", "removed", "modified", "metadata"];
    var chosen = "all";
    var chips = el("div", { "class": "chips" });
    var body = el("div");
    function drawFiles() {
      while (body.firstChild) body.removeChild(body.firstChild);
      var files = R.files.filter(function (f) { return chosen === "all" || f.kind === chosen; });
      if (R.files_total > R.files.length) body.appendChild(el("p", { "class": "muted", text: "The " + num(R.files.length) + " largest of " + num(R.files_total) + " differences (imgscope diff --json has them all)." }));
      if (!files.length) { body.appendChild(el("p", { "class": "muted", text: "No file differs." })); return; }
      body.appendChild(table(["", "path", ["A", "num"], ["B", "num"], ["delta", "num"], ["layer A", "num"], ["layer B", "num"], "what changed"], files.map(function (f) {
        return el("tr", { "data-kind": f.kind }, el("td", null, badge(f.kind)), td(f.path, "path"), td(f.kind === "added" ? "" : size(f.size_a), "num"), td(f.kind === "removed" ? "" : size(f.size_b), "num"), deltaCell(f.delta),
          td(f.layer_a === null ? "" : String(f.layer_a), "num"), td(f.layer_b === null ? "" : String(f.layer_b), "num"),
          td(f.changes.map(function (c) { return c.field; }).join(", "), "muted"));
      })));
    }
    kinds.forEach(function (k) {
      var n = k === "all" ? R.files.length : R.files.filter(function (f) { return f.kind === k; }).length;
      var btn = el("button", { type: "button", "data-kind": k, "aria-pressed": String(k === chosen), text: k + " (" + num(n) + ")" });
      btn.addEventListener("click", function () {
        chosen = k;
        Array.prototype.forEach.call(chips.children, function (c) { c.setAttribute("aria-pressed", String(c.getAttribute("data-kind") === k)); });
        drawFiles();
      });
      chips.appendChild(btn);
    });
    fs.appendChild(chips);
    fs.appendChild(body);
    drawFiles();

    if (R.config.length) {
      var cs = section("Config");
      cs.appendChild(table(["field", "key", "A", "B"], R.config.map(function (c) {
        return el("tr", null, td(c.field), td(c.key || ""), td(c.old === null ? "" : JSON.stringify(c.old), "path"), td(c.new === null ? "" : JSON.stringify(c.new), "path"));
      })));
    }
    if (R.directories.length) {
      var ds = section("Directories");
      ds.appendChild(table(["directory", ["A", "num"], ["B", "num"], ["delta", "num"], ["+", "num"], ["-", "num"], ["~", "num"]], R.directories.map(function (d) {
        return el("tr", null, td(d.directory, "path"), td(size(d.size_a), "num"), td(size(d.size_b), "num"), deltaCell(d.delta), td(num(d.added), "num"), td(num(d.removed), "num"), td(num(d.modified + d.metadata), "num"));
      })));
    }
    warnings(R.warnings);
  }

  // ------------------------------------------------------------------ ci
  function measured(rule, value) {
    if (value === null || value === undefined) return "-";
    if (rule.unit === "bytes") return size(value);
    if (rule.unit === "ratio") return pct(value);
    return num(value);
  }
  function renderCi() {
    header("ci", R.image, null);
    var c = R.counts;
    app.appendChild(el("div", { "class": "verdict " + (R.passed ? "ok" : "bad"), id: "verdict",
      text: (R.passed ? "Passed" : "Failed") + ": " + c.pass + " passed, " + c.fail + " failed, " + c.skip + " skipped" }));
    cards([["size", size(R.image.size)], ["layers", num(R.image.layer_count)], ["rules from", R.config.source]]);
    var s = section("Rules");
    s.id = "rules";
    var order = { fail: 0, pass: 1, skip: 2 };
    var rules = R.rules.slice().sort(function (x, y) { return (order[x.status] || 0) - (order[y.status] || 0); });
    s.appendChild(table(["", "rule", ["measured", "num"], ["limit", "num"], "from", "details"], rules.map(function (r) {
      var details = el("td");
      if (r.reason) details.appendChild(el("div", { "class": "muted", text: r.reason }));
      (r.findings || []).slice(0, 50).forEach(function (f) {
        var where = f.path ? f.path + (f.layer === null || f.layer === undefined ? "" : "  (layer " + f.layer + ")") :
          f.layer === null || f.layer === undefined ? (f.note || "") : "layer " + f.layer + ": " + (f.note || "");
        details.appendChild(el("div", { "class": "path", text: where + (f.bytes ? "  " + size(f.bytes) : "") }));
      });
      return el("tr", { "data-status": r.status }, el("td", null, badge(r.status)), td(r.name), td(measured(r, r.measured), "num"), td(r.limit_text || "", "num"), td(r.origin || ""), details);
    })));
    if (R.config.notes && R.config.notes.length) {
      var n = section("Notes");
      R.config.notes.forEach(function (t) { n.appendChild(el("p", { text: t })); });
    }
  }

  // ------------------------------------------------------------------ audit
  function renderAudit() {
    header("audit", R.image, R.base ? ["base " + (R.base.reference || "")] : null);
    var sm = R.summary;
    app.appendChild(el("div", { "class": "verdict " + (R.failed ? "bad" : "ok"), id: "verdict",
      text: (R.failed ? "Failed" : "Passed") + ": " + sm.total + " finding" + (sm.total === 1 ? "" : "s") + ", " + sm.failing + " at or above --fail-on " + R.fail_on }));
    var levels = ["critical", "high", "medium", "low", "info"];
    cards(levels.map(function (l) { return [l, num(sm[l])]; }).concat([["ignored", num(sm.ignored)]]));
    var s = section("Findings");
    s.id = "findings";
    var chosen = null;
    var chips = el("div", { "class": "chips" });
    var body = el("div");
    function draw() {
      while (body.firstChild) body.removeChild(body.firstChild);
      var list = R.findings.filter(function (f) { return chosen === null || f.severity === chosen; });
      if (!list.length) { body.appendChild(el("p", { "class": "muted", text: "No finding." })); return; }
      body.appendChild(table(["severity", "finding", "where", ["layer", "num"], "status", "evidence (redacted)"], list.map(function (f) {
        var what = el("td", null, el("div", { text: f.title }), el("div", { "class": "muted", text: f.message }));
        var where = f.path || f.subject || f.where;
        return el("tr", { "data-severity": f.severity }, el("td", null, badge(f.severity)), what, td(where, "path", f.instruction || null),
          td(f.layer === null ? "" : String(f.layer), "num"), td(f.status + (f.inherited ? " (inherited)" : "")), td(f.evidence || "", "path"));
      })));
    }
    levels.forEach(function (l) {
      if (!sm[l]) return;
      var btn = el("button", { type: "button", "data-severity": l, "aria-pressed": "false", text: l + " (" + sm[l] + ")" });
      btn.addEventListener("click", function () {
        chosen = chosen === l ? null : l;
        Array.prototype.forEach.call(chips.children, function (c) { c.setAttribute("aria-pressed", String(c.getAttribute("data-severity") === chosen)); });
        draw();
      });
      chips.appendChild(btn);
    });
    s.appendChild(chips);
    s.appendChild(body);
    draw();
    var sc = R.scan;
    if (sc) app.appendChild(el("p", { "class": "muted", text: "Scanned " + num(sc.files) + " files, " + size(sc.bytes_scanned) + " (at most " + size(sc.max_scan_bytes) + " of each); " + num(sc.binary_files) + " binary, " + num(sc.truncated_files) + " truncated." }));
  }

  var views = { inspect: renderInspect, diff: renderDiff, ci: renderCi, audit: renderAudit };
  views[doc.kind]();
  app.appendChild(el("footer", { text: "Written by imgscope; self-contained: this file loads nothing from the network." }));
  document.body.setAttribute("data-ready", "true");
})();
