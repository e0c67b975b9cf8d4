import { useMemo, useState } from "react";
import { type ComponentDoc, PORT_COLORS } from "./model";

export const DRAG_TYPE = "application/x-cumulo-component";

const CATEGORIES: Record<string, string> = { data: "Data", model: "Model", control: "Control", code: "Code" };

/** The component library, by category, with a search box. Drag an item onto the canvas, or
 *  press Enter (or click) on it to add it at the canvas's centre. */
export function Palette({ components, onAdd }: { components: ComponentDoc[]; onAdd: (name: string) => void }) {
  const [query, setQuery] = useState("");
  const [open, setOpen] = useState(false);
  const groups = useMemo(() => {
    const q = query.trim().toLowerCase();
    const shown = components.filter((c) => !q || [c.name, c.title, c.description, c.category]
      .some((text) => text.toLowerCase().includes(q)));
    const out = new Map<string, ComponentDoc[]>();
    for (const c of shown) out.set(c.category, [...(out.get(c.category) ?? []), c]);
    return out;
  }, [components, query]);

  return (
    <aside className={open ? "palette open" : "palette"} aria-label="Components">
      <button type="button" className="palette-toggle" aria-expanded={open} onClick={() => setOpen(!open)}>
        Components {open ? "▴" : "▾"}
      </button>
      <div className="palette-body">
        <input type="search" placeholder="Search components" aria-label="Search components" value={query}
               onChange={(e) => setQuery(e.target.value)} />
        <p className="muted palette-hint">Drag onto the canvas, or press Enter to add.</p>
        {groups.size === 0 && <p className="muted">No component matches “{query}”.</p>}
        {[...groups].map(([category, items]) => (
          <section key={category} aria-label={CATEGORIES[category] ?? category}>
            <h3>{CATEGORIES[category] ?? category}</h3>
            <ul role="list">
              {items.map((c) => (
                <li key={c.name}>
                  <button type="button" className="palette-item" draggable title={c.description}
                          aria-label={`${c.title}: add to the canvas`}
                          onDragStart={(e) => {
                            e.dataTransfer.setData(DRAG_TYPE, c.name);
                            e.dataTransfer.setData("text/plain", c.name);
                            e.dataTransfer.effectAllowed = "copy";
                          }}
                          onClick={() => onAdd(c.name)}>
                    <span className="palette-title">{c.title}</span>
                    <span className="palette-ports" aria-hidden="true">
                      {c.inputs.map((p) => <i key={"i" + p.name} style={{ background: PORT_COLORS[p.type] }} />)}
                      <b>→</b>
                      {c.outputs.map((p) => <i key={"o" + p.name} style={{ background: PORT_COLORS[p.type] }} />)}
                    </span>
                  </button>
                </li>
              ))}
            </ul>
          </section>
        ))}
        <div className="legend port-legend" aria-label="Port types">
          {Object.entries(PORT_COLORS).map(([type, color]) => (
            <span key={type}><i style={{ background: color }} />{type}</span>
          ))}
        </div>
      </div>
    </aside>
  );
}
