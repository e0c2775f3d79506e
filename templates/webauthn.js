(() => {
  "use strict";
  // Passkeys on the gateway's pages (login, second step, sessions). Inline, allowed by its
  // hash in the pages' CSP; without it (or without WebAuthn) the buttons stay hidden.
  if (!window.PublicKeyCredential || !navigator.credentials) return;
  const enc = (buf) => {
    let s = "";
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const dec = (s) => {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  };
  const status = document.getElementById("passkey-status");
  const say = (msg, error) => {
    if (!status) return;
    status.textContent = msg;
    status.className = error ? "error" : "";
    status.hidden = false;
  };
  const post = async (url, body) => {
    const r = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.reason || j.error || "HTTP " + r.status);
    return j;
  };
  const creation = (pk) => {
    pk.challenge = dec(pk.challenge);
    pk.user.id = dec(pk.user.id);
    for (const c of pk.excludeCredentials || []) c.id = dec(c.id);
    return pk;
  };
  const request = (pk) => {
    pk.challenge = dec(pk.challenge);
    for (const c of pk.allowCredentials || []) c.id = dec(c.id);
    return pk;
  };
  const attestation = (c) => ({
    id: c.id,
    rawId: enc(c.rawId),
    type: c.type,
    response: {
      attestationObject: enc(c.response.attestationObject),
      clientDataJSON: enc(c.response.clientDataJSON),
      transports: c.response.getTransports ? c.response.getTransports() : [],
    },
    extensions: {},
  });
  const assertion = (c) => ({
    id: c.id,
    rawId: enc(c.rawId),
    type: c.type,
    response: {
      authenticatorData: enc(c.response.authenticatorData),
      clientDataJSON: enc(c.response.clientDataJSON),
      signature: enc(c.response.signature),
      userHandle: c.response.userHandle ? enc(c.response.userHandle) : null,
    },
    extensions: {},
  });
  const failed = (e) =>
    say(e && e.name === "NotAllowedError" ? "Cancelled, or no passkey answered." : "That did not work: " + e.message, true);
  const signIn = async (start, finish, extra) => {
    const s = await post(start, extra);
    const c = await navigator.credentials.get({ publicKey: request(s.publicKey) });
    const done = await post(finish, Object.assign({ ceremony: s.ceremony, credential: assertion(c) }, extra));
    window.location.assign(done.redirect);
  };

  const login = document.getElementById("passkey-login");
  if (login) {
    login.hidden = false;
    login.addEventListener("click", () => {
      const back = document.querySelector("input[name=return_to]");
      signIn("/.auth/webauthn/login/start", "/.auth/webauthn/login/finish", {
        return_to: back ? back.value : "/",
      }).catch(failed);
    });
  }
  const verify = document.getElementById("passkey-verify");
  if (verify) {
    verify.hidden = false;
    verify.addEventListener("click", () => {
      signIn("/.auth/webauthn/verify/start", "/.auth/webauthn/verify/finish", {
        token: verify.dataset.token,
      }).catch(failed);
    });
  }
  const register = document.getElementById("passkey-register");
  if (register) {
    register.hidden = false;
    register.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const name = document.getElementById("passkey-name").value;
      (async () => {
        const s = await post("/.auth/webauthn/register/start", { name });
        const c = await navigator.credentials.create({ publicKey: creation(s.publicKey) });
        await post("/.auth/webauthn/register/finish", { ceremony: s.ceremony, credential: attestation(c) });
        say("Added " + name + ".");
        window.location.reload();
      })().catch(failed);
    });
  }
})();
