// /login: a plain form POST to /auth/login (works without this script); this adds the error
// message and keeps the page the visitor was sent from.
import { h, replace } from "./app.js";

const query = new URLSearchParams(location.search);
const messages = {
  invalid: "Incorrect email or password. Check both and try again.",
  deactivated: "This account is deactivated; ask an admin of this instance to reactivate it.",
};
const error = messages[query.get("error")];
if (error) {
  replace(document.getElementById("message"), h("div", { class: "notice error", role: "alert" }, error));
  document.getElementById("password").focus();
}
const next = query.get("next");
if (next && next.startsWith("/") && !next.startsWith("//")) document.getElementById("next").value = next;
fetch("/api/version").then((r) => r.json()).then((v) => {
  document.getElementById("version").textContent = `${v.version} · ${v.channel}`;
}).catch(() => {});
