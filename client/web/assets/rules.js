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
  const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });
  const encoder = new TextEncoder();

  // countChars counts user-perceived characters: extended grapheme
  // clusters (UAX #29), so 👍🏽 is one and CR LF is one.
  function countChars(text) {
    let n = 0;
    for (const _ of segmenter.segment(text)) n++;
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
