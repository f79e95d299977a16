// Opens every collapsed details element around the target of a link, so that links into the drill-down and the
// experience list land on something visible (browsers differ on doing this themselves).
function flexOpen() {
  var id = decodeURIComponent(location.hash.slice(1));
  var t = id && document.getElementById(id);
  if (!t) return;
  for (var n = t; n; n = n.parentElement) {
    if (n.tagName === 'DETAILS') n.open = true;
  }
  t.scrollIntoView();
}
addEventListener('hashchange', flexOpen);
flexOpen();
