// Times arrive as UTC in <time datetime=...>; show them in the browser's zone, UTC on hover.
const FORMAT = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});

export function localTime(date) {
  return FORMAT.format(date);
}

export function localizeTimes(root = document) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    const utc = el.textContent;
    el.textContent = localTime(date);
    el.title = utc;
  }
}
