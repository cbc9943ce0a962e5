// Loads the page's strings once when no other page script has, then fills `[data-i18n]` elements.

import { t, translatePage, useLanguage } from "./i18n.js";

const PROBE = "board.calls.title"; // a key every language file has

/** Translate `root` in the `#lang=` language (or the browser's); untouched when no strings could be loaded. */
export async function translatePanels(root, lang) {
  if (t(PROBE) === PROBE) {
    try {
      await useLanguage(lang);
    } catch (err) {
      console.warn("strings not loaded; the page stays in English", err);
    }
  }
  if (t(PROBE) !== PROBE) translatePage(root);
}
