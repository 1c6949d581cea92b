/* Marked passages on the pair page (templates/workspace/_spans.html).
   Each response's text is drawn from the exact response text (from #spans-state) into one element, so character
   offsets are read straight from the selection: the length of the text between the element's start and the
   selection's ends. Marks are drawn as <mark> elements around that same text.
   Mouse: select words, then "Mark passage" by the selection. Keyboard: "Mark a passage" under each response
   heading opens a dialog that picks whole sentences (or the text selected, if any). */
(function () {
  "use strict";

  var stateNode = document.getElementById("spans-state");
  var dialog = document.getElementById("span-dialog");
  var form = document.getElementById("span-form");
  if (!stateNode || !dialog || !form) return;

  var state = JSON.parse(stateNode.textContent);
  var texts = state.texts;
  var labels = state.labels;
  var spans = state.spans;
  var createUrl = form.getAttribute("action");
  var csrfToken = form.elements.csrfmiddlewaretoken.value;
  var live = document.getElementById("span-live");
  var floatButton = document.getElementById("span-float");
  var errorsNode = document.getElementById("span-errors");
  var fromSelect = document.getElementById("span-from");
  var toSelect = document.getElementById("span-to");
  var preview = document.getElementById("span-preview");
  var useSelection = document.getElementById("span-use-selection");
  var useSentences = document.getElementById("span-use-sentences");
  var selectionChoice = document.getElementById("span-choice-selection");

  var pending = null; // the current selection inside a response: {side, start, end}
  var dialogSide = 1;
  var opener = null;

  function announce(text) {
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 30);
  }
  function labelTitle(label) { return label.charAt(0).toUpperCase() + label.slice(1); }
  function labelIndex(label) { var i = labels.indexOf(label); return i < 0 ? labels.length : i; }
  function shorten(text, n) {
    var flat = text.replace(/\s+/g, " ").trim();
    return flat.length <= n ? flat : flat.slice(0, n - 1).trim() + "…";
  }

  // ---- the responses' text, drawn exactly, with marks ----
  function article(side) { return document.getElementById("response-" + side); }
  function textRoot(side) {
    var a = article(side);
    return a ? a.querySelector(".spans-raw") : null;
  }

  function draw(side) {
    var a = article(side);
    if (!a) return;
    var holder = a.querySelector(".text");
    var text = texts[side - 1];
    var mine = spans.filter(function (s) { return s.side === side; });
    var cuts = [0, text.length];
    mine.forEach(function (s) { cuts.push(s.start, s.end); });
    cuts = cuts.filter(function (c, i, all) { return all.indexOf(c) === i; }).sort(function (x, y) { return x - y; });
    var root = document.createElement("span");
    root.className = "spans-raw";
    for (var i = 0; i < cuts.length - 1; i++) {
      var a0 = cuts[i], a1 = cuts[i + 1];
      if (a1 <= a0) continue;
      var piece = text.slice(a0, a1);
      var over = mine.filter(function (s) { return s.start <= a0 && s.end >= a1; });
      if (!over.length) { root.appendChild(document.createTextNode(piece)); continue; }
      var mark = document.createElement("mark");
      var first = over[0];
      mark.className = "span-seg span-c" + Math.min(labelIndex(first.label), 5) + (over.length > 1 ? " span-multi" : "");
      mark.title = over.map(function (s) { return labelTitle(s.label) + (s.note ? ": " + s.note : ""); }).join(" · ");
      mark.setAttribute("data-spans", over.map(function (s) { return s.id; }).join(" "));
      mark.appendChild(document.createTextNode(piece));
      root.appendChild(mark);
    }
    holder.textContent = "";
    holder.appendChild(root);
    holder.classList.add("spans-text");
  }

  function listItem(span) {
    var li = document.createElement("li");
    li.className = "span-item";
    li.setAttribute("data-span", String(span.id));
    var chip = document.createElement("span");
    chip.className = "span-chip span-label";
    chip.setAttribute("data-label", span.label);
    chip.textContent = labelTitle(span.label);
    var quote = document.createElement("q");
    quote.className = "span-quote";
    quote.textContent = shorten(span.quote, 120);
    li.appendChild(chip);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(quote);
    if (span.note) {
      var note = document.createElement("span");
      note.className = "span-note";
      note.textContent = span.note;
      li.appendChild(document.createTextNode(" "));
      li.appendChild(note);
    }
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link span-remove";
    remove.setAttribute("data-span", String(span.id));
    remove.textContent = "Remove";
    var hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = " the mark " + span.label + ": " + shorten(span.quote, 60);
    remove.appendChild(hidden);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(remove);
    return li;
  }

  function drawList(side) {
    var bar = document.querySelector('.span-bar[data-side="' + side + '"]');
    if (!bar) return;
    var box = bar.querySelector(".span-list-box");
    var list = bar.querySelector(".span-list");
    var mine = spans.filter(function (s) { return s.side === side; });
    list.textContent = "";
    mine.forEach(function (s) { list.appendChild(listItem(s)); });
    bar.querySelector(".span-count").textContent = mine.length + " marked passage" + (mine.length === 1 ? "" : "s");
    box.hidden = mine.length === 0;
    colourChips(bar);
  }

  function colourChips(scope) {
    scope.querySelectorAll(".span-label[data-label]").forEach(function (chip) {
      chip.classList.add("span-c" + Math.min(labelIndex(chip.getAttribute("data-label")), 5));
    });
  }

  function redraw() {
    [1, 2].forEach(function (side) { draw(side); drawList(side); });
  }

  // ---- offsets of a selection inside a response's text ----
  function offsetIn(root, node, offset) {
    var range = document.createRange();
    range.setStart(root, 0);
    try { range.setEnd(node, offset); } catch (e) { return null; }
    return range.toString().length;
  }

  function sideOf(node) {
    for (var n = node; n; n = n.parentNode) {
      if (n.classList && n.classList.contains("spans-raw")) {
        var a = n.closest(".response");
        return a ? parseInt(a.id.replace("response-", ""), 10) : null;
      }
    }
    return null;
  }

  function readSelection() {
    var sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return null;
    var range = sel.getRangeAt(0);
    var side = sideOf(range.startContainer) || sideOf(range.endContainer);
    if (!side) return null;
    var root = textRoot(side);
    var text = texts[side - 1];
    var start = root.contains(range.startContainer) ? offsetIn(root, range.startContainer, range.startOffset) : 0;
    var end = root.contains(range.endContainer) ? offsetIn(root, range.endContainer, range.endOffset) : text.length;
    if (start === null || end === null) return null;
    // Leave out white space at either edge, so a sloppy drag marks the words only.
    while (start < end && /\s/.test(text.charAt(start))) start++;
    while (end > start && /\s/.test(text.charAt(end - 1))) end--;
    if (end <= start) return null;
    return { side: side, start: start, end: end, rect: range.getBoundingClientRect() };
  }

  function placeFloat(found) {
    if (!found || dialog.open) { floatButton.hidden = true; return; }
    floatButton.hidden = false;
    var r = found.rect;
    var width = floatButton.offsetWidth || 140;
    var top = r.bottom + 8;
    if (top + 44 > window.innerHeight) top = Math.max(8, r.top - 52);
    var left = Math.min(Math.max(8, r.right - width), window.innerWidth - width - 8);
    floatButton.style.top = Math.round(top) + "px";
    floatButton.style.left = Math.round(left) + "px";
  }

  var selectionTimer = null;
  document.addEventListener("selectionchange", function () {
    if (dialog.open) return;
    clearTimeout(selectionTimer);
    selectionTimer = setTimeout(function () {
      pending = readSelection();
      placeFloat(pending);
      document.querySelectorAll(".span-open").forEach(function (button) {
        var side = parseInt(button.getAttribute("data-side"), 10);
        button.firstChild.textContent = pending && pending.side === side ? "Mark the selected text" : "Mark a passage";
      });
    }, 120);
  });
  // The floating control goes with the text it belongs to: hide it when the text scrolls.
  document.addEventListener("scroll", function () { floatButton.hidden = true; }, true);
  // Keep the selection (and the focus) where they are when the control is pressed.
  floatButton.addEventListener("mousedown", function (event) { event.preventDefault(); });
  floatButton.addEventListener("click", function () {
    if (pending) openDialog(pending.side, pending, document.querySelector('.span-open[data-side="' + pending.side + '"]'));
  });

  // ---- sentences, for choosing a passage with the keyboard ----
  var CLOSERS = ".!?…\"'”’)]";
  function sentences(text) {
    var found = [];
    var start = 0;
    function push(s, e) {
      while (s < e && /\s/.test(text.charAt(s))) s++;
      while (e > s && /\s/.test(text.charAt(e - 1))) e--;
      if (e > s) found.push({ start: s, end: e });
    }
    var i = 0;
    while (i < text.length) {
      var ch = text.charAt(i);
      if (ch === "\n") { push(start, i); start = i + 1; i++; continue; }
      if (".!?…".indexOf(ch) >= 0) {
        var j = i + 1;
        while (j < text.length && CLOSERS.indexOf(text.charAt(j)) >= 0) j++;
        if (j >= text.length || /\s/.test(text.charAt(j))) { push(start, j); start = j; }
        i = j;
        continue;
      }
      i++;
    }
    push(start, text.length);
    return found;
  }

  var sentenceList = [];
  function fillSentences(side) {
    var text = texts[side - 1];
    sentenceList = sentences(text);
    [fromSelect, toSelect].forEach(function (select) {
      select.textContent = "";
      sentenceList.forEach(function (s, i) {
        var option = document.createElement("option");
        option.value = String(i);
        option.textContent = (i + 1) + ". " + shorten(text.slice(s.start, s.end), 70);
        select.appendChild(option);
      });
    });
    fromSelect.value = "0";
    toSelect.value = "0";
  }

  function chosen() {
    var text = texts[dialogSide - 1];
    if (useSelection.checked && dialog._selection) {
      return { start: dialog._selection.start, end: dialog._selection.end, quote: text.slice(dialog._selection.start, dialog._selection.end) };
    }
    var a = parseInt(fromSelect.value, 10) || 0;
    var b = parseInt(toSelect.value, 10) || 0;
    if (b < a) { var t = a; a = b; b = t; }
    var first = sentenceList[a], last = sentenceList[b];
    if (!first || !last) return null;
    return { start: first.start, end: last.end, quote: text.slice(first.start, last.end) };
  }

  function updatePreview() {
    var passage = chosen();
    preview.textContent = passage ? shorten(passage.quote, window.innerWidth < 600 ? 120 : 240) : "";
    var bySentence = !useSelection.checked;
    fromSelect.disabled = !bySentence;
    toSelect.disabled = !bySentence;
  }
  [fromSelect, toSelect, useSelection, useSentences].forEach(function (control) {
    control.addEventListener("change", function () {
      if (control === fromSelect && parseInt(toSelect.value, 10) < parseInt(fromSelect.value, 10)) toSelect.value = fromSelect.value;
      updatePreview();
    });
  });

  function showErrors(errors) {
    errorsNode.textContent = "";
    Object.keys(errors || {}).forEach(function (field) {
      (errors[field] || []).forEach(function (message) {
        var p = document.createElement("p");
        p.className = "error";
        p.textContent = message;
        errorsNode.appendChild(p);
      });
    });
  }

  function openDialog(side, selection, from) {
    dialogSide = side;
    opener = from || null;
    dialog._selection = selection || null;
    document.getElementById("span-dialog-title").textContent = "Mark a passage in Response " + side;
    fillSentences(side);
    selectionChoice.hidden = !selection;
    useSelection.checked = !!selection;
    useSentences.checked = !selection;
    form.elements.note.value = "";
    showErrors({});
    updatePreview();
    floatButton.hidden = true;
    dialog.showModal();
    (selection ? form.querySelector("input[name=label]:checked") : fromSelect).focus();
  }

  document.querySelectorAll(".span-open").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var side = parseInt(button.getAttribute("data-side"), 10);
      var selection = pending && pending.side === side ? pending : null;
      openDialog(side, selection, button);
    });
  });
  document.querySelectorAll(".span-hint").forEach(function (hint) { hint.hidden = false; });

  // "m" while reading a response (the response box has focus): mark a passage of it, as its button does.
  [1, 2].forEach(function (side) {
    var box = article(side);
    if (!box) return;
    box.addEventListener("keydown", function (event) {
      if (event.key !== "m" || event.ctrlKey || event.metaKey || event.altKey || event.target !== box) return;
      event.preventDefault();
      var button = box.querySelector(".span-open");
      if (button) button.click();
    });
  });

  // The workspace's own shortcuts listen on the document: keys typed in this dialog are the dialog's alone.
  dialog.addEventListener("keydown", function (event) { event.stopPropagation(); });
  document.getElementById("span-cancel").addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("close", function () {
    var back = opener || document.querySelector('.span-open[data-side="' + dialogSide + '"]');
    if (back) back.focus();
  });

  function post(url, body) {
    body.set("csrfmiddlewaretoken", csrfToken);
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken, Accept: "application/json" }
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var passage = chosen();
    if (!passage) { showErrors({ start: ["Choose a passage."] }); return; }
    var label = form.querySelector("input[name=label]:checked");
    if (!label) { showErrors({ label: ["Choose a label."] }); return; }
    var body = new URLSearchParams();
    body.set("side", String(dialogSide));
    body.set("start", String(passage.start));
    body.set("end", String(passage.end));
    body.set("label", label.value);
    body.set("note", form.elements.note.value);
    body.set("quote", passage.quote);
    var save = document.getElementById("span-save");
    save.disabled = true;
    post(createUrl, body).then(function (result) {
      save.disabled = false;
      if (!result.ok) {
        showErrors(result.data.errors || { span: ["The passage could not be marked (" + result.status + "). Reload the page and try again."] });
        return;
      }
      spans = result.data.spans;
      redraw();
      var sel = window.getSelection();
      if (sel) sel.removeAllRanges();
      pending = null;
      dialog.close();
      announce("Marked as " + labelTitle(result.data.span.label) + " in Response " + result.data.span.side + ": " + shorten(result.data.span.quote, 80));
    }).catch(function () {
      save.disabled = false;
      showErrors({ span: ["Not connected: the passage is not marked yet. Try again when the connection returns."] });
    });
  });

  // Remove: the list's buttons (and its plain forms, which also work without this script).
  document.addEventListener("click", function (event) {
    var button = event.target.closest(".span-bar .span-remove");
    if (!button) return;
    event.preventDefault();
    var item = button.closest(".span-item");
    var id = item.getAttribute("data-span");
    var side = parseInt(button.closest(".span-bar").getAttribute("data-side"), 10);
    post(createUrl + "/" + id + "/delete", new URLSearchParams()).then(function (result) {
      if (!result.ok && result.status !== 404) {
        announce("The mark could not be removed. Reload the page and try again.");
        return;
      }
      spans = result.ok ? result.data.spans : spans.filter(function (s) { return String(s.id) !== id; });
      redraw();
      announce("Removed the mark.");
      var bar = document.querySelector('.span-bar[data-side="' + side + '"]');
      var next = bar.querySelector(".span-remove") || bar.querySelector(".span-open");
      if (next) next.focus();
    });
  });

  redraw();
})();
