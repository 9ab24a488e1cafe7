// After django-otp-webauthn's script saved a new passkey, move on: to the page's configured
// success URL (json_script "lightbox-passkey-success-url"), else reload this page.
// The package script announces the outcome with DOM events that bubble from its button.

const config = document.getElementById("lightbox-passkey-success-url");
const successUrl = config ? JSON.parse(config.textContent) : "";

function sameOrigin(url) {
  try {
    return new URL(url, window.location.href).origin === window.location.origin;
  } catch {
    return false;
  }
}

document.addEventListener("otp_webauthn.register_complete", () => {
  if (successUrl && sameOrigin(successUrl)) {
    window.location.assign(new URL(successUrl, window.location.href).href);
  } else {
    window.location.reload();
  }
});
