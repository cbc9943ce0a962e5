// The start page: server health, and links that carry the token to the pages.
//
// The token arrives in the URL fragment (never sent to the server); takeToken() moves it into this
// tab's sessionStorage and out of the address and the history. The links carry it on in their own
// fragment (a page opened in a new tab has no sessionStorage of this one), and each page clears it.
import { takeToken } from "./live.js";

const token = takeToken();
if (token) {
  for (const id of ["wallboard", "supervisor"]) {
    document.getElementById(id).href += `#token=${encodeURIComponent(token)}`;
  }
}
const state = document.getElementById("state");
fetch("api/metrics/health").then((r) => r.json()).then((h) => {
  state.textContent = `${h.status} (PostgreSQL ${h.postgres}, Redis ${h.redis})`;
}).catch(() => { state.textContent = "unreachable"; });
