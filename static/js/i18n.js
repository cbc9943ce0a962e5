// The pages' strings and locale formats: one JSON file per language under `static/i18n/`
// (`en.json`, `de.json`, `fr.json`, `es.json`), keys namespaced by page (`board.*`, `console.*`,
// `common.*`). English is the fallback for a key a language lacks (a test keeps the files' keys equal).
// Numbers, durations, dates and times go through `Intl` in the chosen locale.

export const LANGUAGES = ["en", "de", "fr", "es"];

const state = { lang: "en", locale: "en", strings: {}, fallback: {} };

async function fetchStrings(lang) {
  const response = await fetch(new URL(`../i18n/${lang}.json`, import.meta.url));
  if (!response.ok) throw new Error(`strings for "${lang}" not found (${response.status})`);
  return response.json();
}

/** The language to use: an explicit choice (`#lang=` or a board's locale), else the browser's, else English. */
export function pickLanguage(explicit) {
  const candidates = [explicit, ...(navigator.languages || [navigator.language])].filter(Boolean);
  for (const candidate of candidates) {
    const base = String(candidate).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return { lang: base, locale: String(candidate) };
  }
  return { lang: "en", locale: "en-GB" };
}

/** Loads a language's strings (and English for fallback); `locale` drives Intl formats. */
export async function useLanguage(explicit) {
  const { lang, locale } = pickLanguage(explicit);
  state.fallback = Object.keys(state.fallback).length ? state.fallback : await fetchStrings("en");
  state.strings = lang === "en" ? state.fallback : await fetchStrings(lang);
  state.lang = lang;
  state.locale = locale;
  document.documentElement.lang = lang;
  return state;
}

/** The string for `key` with `{name}` placeholders filled from `vars`; the key itself when unknown. */
export function t(key, vars = {}) {
  const text = state.strings[key] ?? state.fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** `key_one` or `key_other` (Intl.PluralRules of the locale) with `{n}` set to the formatted count. */
export function plural(key, n, vars = {}) {
  const form = new Intl.PluralRules(state.locale).select(n) === "one" ? "one" : "other";
  return t(`${key}_${form}`, { n: number(n), ...vars });
}

/** Fills every `[data-i18n]` element's text (and `[data-i18n-title]` titles, `[data-i18n-label]`
 * aria-labels, `[data-i18n-placeholder]` placeholders) under `root`. */
export function translatePage(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

/** The language in force (`en`, `de`, `fr`, `es`). */
export function currentLanguage() {
  return state.lang;
}

export function currentLocale() {
  return state.locale;
}

export function number(value, options = {}) {
  return value == null || !Number.isFinite(value) ? "–" : new Intl.NumberFormat(state.locale, options).format(value);
}

/** A fraction as a percentage in the locale ("73 %" in French); "–" for null. */
export function percent(fraction, digits = 0) {
  return number(fraction, { style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A time of day (hours and minutes) in the locale, optionally in a time zone. */
export function clockTime(value, timeZone = undefined) {
  return dateTime(value, { hour: "2-digit", minute: "2-digit", timeZone });
}

export function dateTime(value, options = { dateStyle: "short", timeStyle: "short" }) {
  return value == null ? "–" : new Intl.DateTimeFormat(state.locale, options).format(new Date(value));
}
