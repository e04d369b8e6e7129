// The shared message rules (Go: package message, CheckText), for the
// compose box: the same checks in the same order with the same words, so
// that what the page refuses is exactly what the client core refuses.
// tests/web checks both on one corpus. The limits come from the page
// (data-max-chars, data-max-bytes), which takes them from package message.
"use strict";
(function () {
  const root = document.documentElement;
  const maxChars = Number(root.dataset.maxChars) || 160;
  const maxBytes = Number(root.dataset.maxBytes) || 2048;
  const encoder = new TextEncoder();

  // ---- grapheme clusters, exactly as package message counts them: a port
  // of github.com/rivo/uniseg's rules (graphemerules.go, Unicode 15.0.0)
  // over its property table (graphemetable.js, generated from it). Not
  // Intl.Segmenter: browsers follow newer Unicode versions, in which some
  // texts have fewer characters than the server counts.
  const table = window.SealpostGraphemeTable.ranges;
  const P = { Any: 0, Prepend: 1, CR: 2, LF: 3, Control: 4, Extend: 5, RegionalIndicator: 6, SpacingMark: 7,
    L: 8, V: 9, T: 10, LV: 11, LVT: 12, ZWJ: 13, ExtendedPictographic: 14 };
  const S = { Any: 0, CR: 1, ControlLF: 2, L: 3, LVV: 4, LVTT: 5, Prepend: 6, ExtPict: 7, ExtPictZWJ: 8, RIOdd: 9, RIEven: 10 };
  const key = (state, prop) => state * 32 + prop;
  // [state, property, new state, boundary, rule], as uniseg's grTransitions.
  const transitions = new Map([
    [S.Any, P.CR, S.CR, true, 50], [S.Any, P.LF, S.ControlLF, true, 50], [S.Any, P.Control, S.ControlLF, true, 50], // GB5
    [S.CR, P.Any, S.Any, true, 40], [S.ControlLF, P.Any, S.Any, true, 40], // GB4
    [S.CR, P.LF, S.ControlLF, false, 30], // GB3
    [S.Any, P.L, S.L, true, 9990], [S.L, P.L, S.L, false, 60], [S.L, P.V, S.LVV, false, 60], // GB6
    [S.L, P.LV, S.LVV, false, 60], [S.L, P.LVT, S.LVTT, false, 60],
    [S.Any, P.LV, S.LVV, true, 9990], [S.Any, P.V, S.LVV, true, 9990], // GB7
    [S.LVV, P.V, S.LVV, false, 70], [S.LVV, P.T, S.LVTT, false, 70],
    [S.Any, P.LVT, S.LVTT, true, 9990], [S.Any, P.T, S.LVTT, true, 9990], [S.LVTT, P.T, S.LVTT, false, 80], // GB8
    [S.Any, P.Extend, S.Any, false, 90], [S.Any, P.ZWJ, S.Any, false, 90], // GB9
    [S.Any, P.SpacingMark, S.Any, false, 91], // GB9a
    [S.Any, P.Prepend, S.Prepend, true, 9990], [S.Prepend, P.Any, S.Any, false, 92], // GB9b
    [S.Any, P.ExtendedPictographic, S.ExtPict, true, 9990], // GB11
    [S.ExtPict, P.Extend, S.ExtPict, false, 110], [S.ExtPict, P.ZWJ, S.ExtPictZWJ, false, 110],
    [S.ExtPictZWJ, P.ExtendedPictographic, S.ExtPict, false, 110],
    [S.Any, P.RegionalIndicator, S.RIOdd, true, 9990], [S.RIOdd, P.RegionalIndicator, S.RIEven, false, 120], // GB12, GB13
    [S.RIEven, P.RegionalIndicator, S.RIOdd, true, 120],
  ].map(([state, prop, next, boundary, rule]) => [key(state, prop), { next, boundary, rule }]));

  // property is uniseg's propertyGraphemes: ASCII fast, else a binary
  // search of the table.
  function property(cp) {
    if (cp >= 0x20 && cp <= 0x7e) return P.Any;
    if (cp === 0x0a) return P.LF;
    if (cp === 0x0d) return P.CR;
    if (cp <= 0x1f || cp === 0x7f) return P.Control;
    let from = 0, to = table.length / 3;
    while (to > from) {
      const mid = (from + to) >> 1;
      if (cp < table[mid * 3]) to = mid;
      else if (cp > table[mid * 3 + 1]) from = mid + 1;
      else return table[mid * 3 + 2];
    }
    return P.Any;
  }

  // step is uniseg's transitionGraphemeState: the state after cp, and
  // whether a cluster boundary comes before cp.
  function step(state, cp) {
    const prop = property(cp);
    const exact = transitions.get(key(state, prop));
    if (exact) return [exact.next, exact.boundary];
    const anyProp = state >= 0 ? transitions.get(key(state, P.Any)) : undefined;
    const anyState = transitions.get(key(S.Any, prop));
    if (anyProp && anyState) {
      return [anyState.next, anyProp.rule < anyState.rule ? anyProp.boundary : anyState.boundary];
    }
    if (anyProp) return [anyProp.next, anyProp.boundary];
    if (anyState) return [anyState.next, anyState.boundary];
    return [S.Any, true]; // GB999
  }

  // countChars counts user-perceived characters: extended grapheme
  // clusters (UAX #29), so 👍🏽 is one and CR LF is one.
  function countChars(text) {
    if (/^[\x00-\x7f]*$/.test(text)) {
      // package message's ASCII path: each byte is a character but CR LF.
      return text.length - (text.match(/\r\n/g) || []).length;
    }
    let n = 0;
    let state = -1;
    for (const ch of text) {
      const [next, boundary] = step(state, ch.codePointAt(0));
      if (state < 0 || boundary) n++;
      state = next;
    }
    return n;
  }

  function utf8Length(text) {
    return encoder.encode(text).length;
  }

  // A control character other than line feed: C0, DEL and C1.
  function isForbiddenControl(cp) {
    return cp !== 0x0a && (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f));
  }

  // check returns null when text may be sent, else {code, message}.
  function check(text) {
    if (text === "") {
      return { code: "text_empty", message: "the message is empty; write 1 to " + maxChars + " characters" };
    }
    if (!text.isWellFormed()) {
      return { code: "text_invalid_utf8", message: "the message is not valid UTF-8" };
    }
    const bytes = utf8Length(text);
    if (bytes > maxBytes) {
      return { code: "text_too_many_bytes", message: "the message is " + bytes + " bytes of UTF-8; the limit is " + maxBytes };
    }
    let at = 0;
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      if (isForbiddenControl(cp)) {
        const hex = cp.toString(16).toUpperCase().padStart(4, "0");
        return {
          code: "text_control_character",
          message: "the message contains control character U+" + hex + " at byte " + at + "; only line feed is allowed",
        };
      }
      at += utf8Length(ch);
    }
    const n = countChars(text);
    if (n > maxChars) {
      return { code: "text_too_long", message: n + " characters; the limit is " + maxChars };
    }
    return null;
  }

  window.SealpostRules = { maxChars, maxBytes, countChars, utf8Length, check };
})();
