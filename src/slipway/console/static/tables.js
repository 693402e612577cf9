// Sortable tables: each header of a table.sortable becomes a button (keyboard reachable)
// that sorts by its column; cells may carry data-sort with the value to sort by.
function key(cell) {
  const raw = cell.dataset.sort ?? cell.textContent.trim();
  const n = Number(raw.replace(/,/g, ""));
  return raw !== "" && !Number.isNaN(n) ? n : raw.toLowerCase();
}

function compare(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b));
}

function sortBy(table, th, index) {
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  for (const body of table.tBodies) {
    const rows = Array.from(body.rows).filter((r) => r.cells.length > index);
    rows.sort((r1, r2) => compare(key(r1.cells[index]), key(r2.cells[index])) * (ascending ? 1 : -1));
    for (const row of rows) body.appendChild(row);
  }
}

export function sortableTables(root = document) {
  for (const table of root.querySelectorAll("table.sortable")) {
    if (!table.tHead) continue;
    Array.from(table.tHead.rows[0].cells).forEach((th, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      button.title = `Sort by ${th.textContent}`;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", () => sortBy(table, th, index));
    });
  }
}
