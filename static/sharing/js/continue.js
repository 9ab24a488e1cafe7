// Leave the token URL (/s/<token>) for the token-free share page, replacing the history entry
// so the token is neither in the address bar nor reachable with the Back button.
const box = document.getElementById("share-continue");
if (box && box.dataset.next && box.dataset.next.startsWith("/")) {
  window.location.replace(box.dataset.next);
}
