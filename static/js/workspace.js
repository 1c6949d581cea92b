/* The pair page: keyboard rating, draft autosave (server and this browser), time on task.
   No inline script is allowed (Content-Security-Policy), so the page's data arrives in #pair-state. */
(function () {
  "use strict";

  var form = document.getElementById("rating-form");
  var stateNode = document.getElementById("pair-state");
  if (!form || !stateNode) return;

  var init = JSON.parse(stateNode.textContent);
  var revising = form.elements.mode.value === "revise";
  var storageKey = "evalplatform-draft:" + init.id;
  var fieldsets = Array.prototype.slice.call(form.querySelectorAll("fieldset.criterion"));
  var statusNode = document.getElementById("save-status");
  var helpDialog = document.getElementById("help");
  var csrfToken = form.elements.csrfmiddlewaretoken.value;
  var draftUrl = form.getAttribute("data-draft-url");
  var pane = form.closest(".rating-pane") || form;
  var summaryNode = document.getElementById("error-summary");
  // A phone or tablet: no keyboard hints, and the page opens at the top of the conversation, not at a criterion.
  var touch = window.matchMedia("(hover: none) and (pointer: coarse)").matches;
  if (touch) document.documentElement.classList.add("ws-touch");
  var IDLE_MS = 60000;
  var SAVE_DELAY_MS = 600;

  function say(text) {
    if (statusNode) statusNode.textContent = text;
  }

  // ---- time on task: total wall time, and active time that pauses after 60 s without input ----
  var totalSeconds = Number(init.total_seconds) || 0;
  var activeSeconds = Number(init.active_seconds) || 0;
  var lastInput = Date.now();
  var lastTick = Date.now();
  function tick() {
    var now = Date.now();
    var dt = Math.max(0, (now - lastTick) / 1000);
    lastTick = now;
    totalSeconds += dt;
    if (document.visibilityState === "visible" && now - lastInput <= IDLE_MS) activeSeconds += dt;
  }
  setInterval(tick, 1000);
  ["keydown", "pointerdown", "input", "wheel", "touchstart"].forEach(function (name) {
    document.addEventListener(name, function () { lastInput = Date.now(); }, { capture: true, passive: true });
  });

  // ---- the form's state ----
  function collect() {
    var values = {};
    var rationales = {};
    fieldsets.forEach(function (fs) {
      var key = fs.getAttribute("data-key");
      var checked = fs.querySelector("input[type=radio]:checked");
      if (checked) values[key] = parseInt(checked.value, 10);
      var text = fs.querySelector("textarea.rationale");
      if (text) rationales[key] = text.value;
    });
    var overall = form.elements.rationale;
    return {
      values: values,
      rationales: rationales,
      rationale: overall ? overall.value : "",
      both_unacceptable: form.elements.both_unacceptable.checked,
      unacceptable_reason: form.elements.unacceptable_reason.value,
      saved_at: Date.now(),
      mode: revising ? "revise" : "rate"
    };
  }

  function apply(state) {
    fieldsets.forEach(function (fs) {
      var key = fs.getAttribute("data-key");
      var value = state.values ? state.values[key] : undefined;
      fs.querySelectorAll("input[type=radio]").forEach(function (radio) {
        radio.checked = value !== undefined && value !== null && parseInt(radio.value, 10) === value;
      });
      var text = fs.querySelector("textarea.rationale");
      if (text && state.rationales && typeof state.rationales[key] === "string") text.value = state.rationales[key];
    });
    if (form.elements.rationale && typeof state.rationale === "string") form.elements.rationale.value = state.rationale;
    form.elements.both_unacceptable.checked = !!state.both_unacceptable;
    if (typeof state.unacceptable_reason === "string") form.elements.unacceptable_reason.value = state.unacceptable_reason;
  }

  function readLocal() {
    try { return JSON.parse(window.localStorage.getItem(storageKey) || "null"); } catch (e) { return null; }
  }
  function writeLocal(state) {
    try { window.localStorage.setItem(storageKey, JSON.stringify(state)); } catch (e) { /* private mode: server only */ }
  }

  // ---- autosave ----
  var timer = null;
  var dirty = false;
  var submitting = false;

  function payload() {
    var body = new URLSearchParams();
    body.set("csrfmiddlewaretoken", csrfToken);
    body.set("draft", JSON.stringify(collect()));
    body.set("total_seconds", totalSeconds.toFixed(1));
    body.set("active_seconds", activeSeconds.toFixed(1));
    return body;
  }

  function flush() {
    if (!dirty || submitting) return;
    dirty = false;
    fetch(draftUrl, {
      method: "POST",
      body: payload(),
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken }
    }).then(function (response) {
      if (!response.ok) throw new Error(String(response.status));
      say("Draft saved.");
    }).catch(function () {
      dirty = true;
      say("Not connected: your answers are kept in this browser and saved when the connection returns.");
    });
  }

  function scheduleSave() {
    dirty = true;
    writeLocal(collect());
    clearTimeout(timer);
    timer = setTimeout(flush, SAVE_DELAY_MS);
  }

  form.addEventListener("change", scheduleSave);
  form.addEventListener("input", scheduleSave);
  window.addEventListener("online", flush);
  // Keep time on task (and any last change) when the tab is hidden or closed.
  function beacon() {
    if (submitting || !navigator.sendBeacon) return;
    navigator.sendBeacon(draftUrl, payload());
  }
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") beacon(); });
  window.addEventListener("pagehide", beacon);
  setInterval(function () { if (Date.now() - lastInput <= IDLE_MS) { dirty = true; flush(); } }, 30000);

  // ---- keyboard ----
  var current = 0;
  function markCurrent() {
    fieldsets.forEach(function (fs, i) { fs.classList.toggle("current", i === current); });
  }
  function focusCriterion(index) {
    if (!fieldsets.length) return;
    current = Math.max(0, Math.min(fieldsets.length - 1, index));
    var fs = fieldsets[current];
    var target = fs.querySelector("input[type=radio]:checked") || fs.querySelector("input[type=radio]");
    target.focus();
    fs.scrollIntoView({ block: "nearest" });
    markCurrent();
  }
  form.addEventListener("focusin", function (event) {
    var fs = event.target.closest("fieldset.criterion");
    if (fs) { current = fieldsets.indexOf(fs); markCurrent(); }
  });

  function choose(index, optionIndex) {
    var radios = fieldsets[index].querySelectorAll("input[type=radio]");
    if (optionIndex < 0 || optionIndex >= radios.length) return false;
    radios[optionIndex].checked = true;
    scheduleSave();
    return true;
  }

  function firstMissing() {
    for (var i = 0; i < fieldsets.length; i++) {
      if (!fieldsets[i].querySelector("input[type=radio]:checked")) return i;
    }
    return -1;
  }

  // The same rules as the server (annotations/services/rating.py), so a refusal is explained before the round trip.
  function problems() {
    var found = [];
    var minimum = Math.max(1, Number(init.rationale_min_length) || 0);
    var needRationale = init.rationale_required && init.rationale_mode !== "none";
    fieldsets.forEach(function (fs) {
      var title = fs.getAttribute("data-title");
      var messages = [];
      if (!fs.querySelector("input[type=radio]:checked")) messages.push("Choose an answer for “" + title + "”.");
      var text = fs.querySelector("textarea.rationale");
      if (needRationale && init.rationale_mode === "per_criterion" && text && text.value.trim().length < minimum) {
        messages.push("Write a rationale for “" + title + "” of at least " + minimum + " characters.");
      }
      if (messages.length) found.push({ key: fs.getAttribute("data-key"), messages: messages, focus: fs });
    });
    var overall = form.elements.rationale;
    if (needRationale && init.rationale_mode === "overall" && overall && overall.value.trim().length < minimum) {
      found.push({ key: "rationale", messages: ["Write a rationale of at least " + minimum + " characters."], focus: overall });
    }
    if (form.elements.both_unacceptable.checked && !form.elements.unacceptable_reason.value.trim()) {
      found.push({
        key: "unacceptable_reason",
        messages: ["Say why both responses are unacceptable."],
        focus: form.elements.unacceptable_reason
      });
    }
    return found;
  }

  function errorSlot(key) { return document.getElementById("errors-" + key); }

  function showProblems(found) {
    form.querySelectorAll(".criterion-errors").forEach(function (slot) { slot.textContent = ""; });
    form.querySelectorAll(".has-error").forEach(function (node) { node.classList.remove("has-error"); });
    found.forEach(function (problem) {
      var slot = errorSlot(problem.key);
      if (!slot) return;
      problem.messages.forEach(function (message) {
        var p = document.createElement("p");
        p.className = "error";
        p.textContent = message;
        slot.appendChild(p);
      });
      var box = slot.closest("fieldset, .field");
      if (box) box.classList.add("has-error");
    });
    // A live region of its own: autosave's "Draft saved." goes to #save-status and never replaces this.
    summaryNode.textContent = "";
    if (!found.length) return;
    var wrap = document.createElement("div");
    wrap.className = "ws-errors";
    var heading = document.createElement("h2");
    var count = found.reduce(function (n, p) { return n + p.messages.length; }, 0);
    heading.textContent = "Not submitted yet: please check " + (count === 1 ? "this answer" : "these " + count + " answers");
    var list = document.createElement("ul");
    found.forEach(function (problem) {
      problem.messages.forEach(function (message) {
        var li = document.createElement("li");
        li.textContent = message;
        list.appendChild(li);
      });
    });
    wrap.appendChild(heading);
    wrap.appendChild(list);
    summaryNode.appendChild(wrap);
  }

  function focusProblem(problem) {
    var index = fieldsets.indexOf(problem.focus);
    if (index >= 0) { focusCriterion(index); return; }
    problem.focus.focus();
    problem.focus.scrollIntoView({ block: "nearest" });
  }

  // Refuses with reasons at each place and at the submit bar; true when the form may go.
  function checkBeforeSubmit() {
    var found = problems();
    showProblems(found);
    if (found.length) focusProblem(found[0]);
    return !found.length;
  }

  // Once errors are shown, each fix clears its own message (and the summary shrinks) without a new submit.
  function refreshProblems() {
    if (!summaryNode.textContent) return;
    showProblems(problems());
  }
  form.addEventListener("change", refreshProblems);

  function trySubmit() {
    if (checkBeforeSubmit()) form.requestSubmit();
  }

  form.addEventListener("submit", function (event) {
    if (!checkBeforeSubmit()) {
      event.preventDefault();
      return;
    }
    tick();
    document.getElementById("total-seconds").value = totalSeconds.toFixed(1);
    document.getElementById("active-seconds").value = activeSeconds.toFixed(1);
    submitting = true;
    var state = collect();
    state.submitted = true;
    writeLocal(state);
  });

  function rationaleBox() {
    return fieldsets[current].querySelector("textarea.rationale") || form.elements.rationale;
  }

  function toggleHelp() {
    if (helpDialog.open) helpDialog.close(); else helpDialog.showModal();
  }
  document.getElementById("help-open").addEventListener("click", toggleHelp);

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var tag = target && target.tagName;
    if (helpDialog.open) {
      if (event.key === "?") { event.preventDefault(); helpDialog.close(); }
      return;
    }
    if (tag === "TEXTAREA" || (tag === "INPUT" && target.type !== "radio" && target.type !== "checkbox")) {
      if (event.key === "Escape") { event.preventDefault(); target.blur(); focusCriterion(current); }
      return;
    }
    if (!pane.contains(target) && target !== document.body) return;
    var key = event.key;
    if (/^[1-9]$/.test(key)) {
      if (choose(current, parseInt(key, 10) - 1)) {
        event.preventDefault();
        if (current < fieldsets.length - 1) focusCriterion(current + 1);
        else document.getElementById("submit-button").focus();
      }
    } else if (key === "ArrowDown" || key === "j") {
      event.preventDefault();
      focusCriterion(current + 1);
    } else if (key === "ArrowUp" || key === "k") {
      event.preventDefault();
      focusCriterion(current - 1);
    } else if (key === "Enter" && tag !== "BUTTON" && tag !== "SUMMARY" && tag !== "A") {
      event.preventDefault();
      trySubmit();
    } else if (key === "Enter" && target.id === "submit-button") {
      event.preventDefault();
      trySubmit();
    } else if (key === "?") {
      event.preventDefault();
      toggleHelp();
    } else if (key === "g") {
      event.preventDefault();
      var details = fieldsets[current].querySelector("details.guidance");
      details.open = !details.open;
    } else if (key === "r") {
      var box = rationaleBox();
      if (box) { event.preventDefault(); box.focus(); }
    }
  });

  // A draft kept in this browser wins when it is newer than the server's (a save lost with the connection).
  (function restore() {
    var local = readLocal();
    var serverSavedAt = (init.state && init.state.saved_at) || 0;
    if (!local) return;
    var sameMode = (local.mode === "revise") === revising;
    if (local.submitted && revising) { window.localStorage.removeItem(storageKey); return; }
    if (sameMode && local.saved_at > serverSavedAt) {
      apply(local);
      say("Restored your unsaved answers.");
      scheduleSave();
    }
  })();

  // ---- on a phone: flip between the responses in a sheet over the page, so the place in the criteria stays ----
  var peekBar = document.getElementById("peek-bar");
  var peekDialog = document.getElementById("peek");
  var placeBeforePeek = 0;
  function showResponse(number) {
    var article = document.getElementById("response-" + number);
    document.getElementById("peek-title").textContent = article.querySelector("h2").textContent;
    document.getElementById("peek-body").innerHTML = article.querySelector(".text").innerHTML;
    peekDialog.querySelectorAll(".peek-flip").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-response") === String(number)));
    });
    peekDialog.scrollTop = 0;
  }
  if (peekBar && peekDialog) {
    peekBar.hidden = false;
    peekBar.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-response]");
      if (!button) return;
      showResponse(button.getAttribute("data-response"));
      placeBeforePeek = window.scrollY;
      peekDialog.showModal();
    });
    // Closing returns focus to the sticky opener, and Chromium scrolls to that button's place in the flow:
    // put the page back where the clinician was.
    peekDialog.addEventListener("close", function () { window.scrollTo(0, placeBeforePeek); });
    peekDialog.addEventListener("click", function (event) {
      var button = event.target.closest("button.peek-flip");
      if (button) showResponse(button.getAttribute("data-response"));
    });
  }

  var serverErrors = summaryNode && summaryNode.textContent.trim();
  var start = firstMissing();
  if (serverErrors) {
    // The server refused the submit: bring the first place with an error into view.
    var invalid = form.querySelector(".has-error");
    var index = fieldsets.indexOf(invalid);
    if (index >= 0) focusCriterion(index);
    else if (invalid) { var control = invalid.querySelector("textarea, input"); if (control) control.focus(); }
  } else if (touch) {
    current = start >= 0 ? start : 0;
    markCurrent();
    window.scrollTo(0, 0);
  } else {
    focusCriterion(start >= 0 ? start : 0);
  }
})();
