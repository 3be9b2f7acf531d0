#include "web/pages.h"

#define PAGE_HEAD(title)                                                                                               \
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"                                                   \
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>" title " · Agnes</title>"          \
    "<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;line-height:1.5}"   \
    "label{display:block;margin-top:1rem}input{width:100%;padding:.5rem;font-size:1rem}"                              \
    "button{margin-top:1.5rem;padding:.6rem 1.2rem;font-size:1rem}pre{background:#f4f4f4;padding:1rem;white-space:pre-wrap;word-break:break-all;"              \
    ".error{color:#a00}</style></head><body>"

const char web_page_setup[] =
    PAGE_HEAD("Set up")
    "<main><h1>Set up this Agnes instance</h1>"
    "<p>This instance has no admin yet. Create the first admin account; after that this page closes.</p>"
    "<form id=\"setup\"><label for=\"email\">Admin email</label>"
    "<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required>"
    "<label for=\"name\">Name (optional)</label><input id=\"name\" name=\"name\" autocomplete=\"name\">"
    "<label for=\"password\">Password (at least 12 characters)</label>"
    "<input id=\"password\" name=\"password\" type=\"password\" minlength=\"12\" autocomplete=\"new-password\" required>"
    "<button type=\"submit\">Create admin</button><p id=\"message\" class=\"error\" role=\"alert\"></p></form>"
    "<h2>Headless</h2><p>The same, for scripts and AI agents:</p>"
    "<pre>curl -X POST http://HOST:8000/auth/bootstrap -H 'Content-Type: application/json' \\\n"
    "  -d '{\"email\":\"admin@example.com\",\"password\":\"at least 12 chars\"}'</pre>"
    "<p>or start the server with <code>SEED_ADMIN_EMAIL</code> and <code>SEED_ADMIN_PASSWORD</code>.</p></main>"
    "<script>document.getElementById('setup').addEventListener('submit',async e=>{e.preventDefault();"
    "const f=e.target,m=document.getElementById('message');const body={email:f.email.value,password:f.password.value};"
    "if(f.name.value)body.name=f.name.value;const r=await fetch('/auth/bootstrap',{method:'POST',"
    "headers:{'Content-Type':'application/json'},body:JSON.stringify(body)});"
    "if(r.ok){location.href='/login';}else{m.textContent=(await r.json()).detail;}});</script>"
    "</body></html>";

const char web_page_login[] =
    PAGE_HEAD("Log in")
    "<main><h1>Log in to Agnes</h1>"
    "<p id=\"message\" class=\"error\" role=\"alert\"></p>"
    "<form method=\"post\" action=\"/auth/login\"><label for=\"email\">Email</label>"
    "<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required>"
    "<label for=\"password\">Password</label>"
    "<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>"
    "<input type=\"hidden\" id=\"next\" name=\"next\" value=\"\">"
    "<button type=\"submit\">Log in</button></form></main>"
    "<script>const q=new URLSearchParams(location.search);const e={invalid:'Incorrect email or password.',"
    "deactivated:'This account is deactivated; ask an admin to reactivate it.'}[q.get('error')];"
    "if(e)document.getElementById('message').textContent=e;"
    "if(q.get('next'))document.getElementById('next').value=q.get('next');</script>"
    "</body></html>";
