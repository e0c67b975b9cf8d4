// The pipeline designer: a palette, a React Flow canvas, a side panel; Validate, Save and Run;
// a run's states drawn on the canvas, live. Routes: /pipelines/new, /pipelines/NAME,
// /pipelines/NAME/runs/RUN.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import {
  applyEdgeChanges, applyNodeChanges, Background, ControlButton, Controls, type Edge, type EdgeChange,
  type NodeChange, ReactFlow, ReactFlowProvider, useNodesInitialized, useReactFlow, type FinalConnectionState,
  type Connection, type IsValidConnection,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { ApiError, get, post } from "../../api";
import { ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { LeaveGuard } from "../../components/LeaveGuard";
import { useApi } from "../../hooks";
import {
  type ComponentDoc, type Definition, layout, makeEdge, NAME, newId, nodeSize, NODE_WIDTH, type ParameterSpec,
  type PipelineOut, type Problem, problemTargets, portsOf, refusal, portType, readableView, RUN_FINISHED,
  type RunOut, stableKey, type StepNode, toDefinition, toGraph,
} from "./model";
import { DRAG_TYPE, Palette } from "./Palette";
import { EdgePanel, type FieldChange, NodePanel, PipelinePanel } from "./Panels";
import { RunDialog, RunHistory, RunPanel } from "./RunPanel";
import { LibraryContext, NODE_TYPES, OverlayContext } from "./StepNode";

export default function Designer() {
  const components = useApi((signal) => get<ComponentDoc[]>("/pipelines/components", undefined, signal), []);
  if (components.error) return <><PageHeader title="Pipeline designer" /><ErrorBox error={components.error} /></>;
  if (!components.data) return <Loading what="Loading the components" />;
  return (
    <ReactFlowProvider>
      <DesignerBody components={components.data} />
    </ReactFlowProvider>
  );
}

interface Drawn {
  name: string;
  description: string;
  parameters: Record<string, ParameterSpec>;
  nodes: StepNode[];
  edges: Edge[];
}

function parseRoute(splat: string): { isNew: boolean; name: string; runId?: string } {
  const parts = splat.split("/").filter(Boolean);
  if (parts[0] === "new" && parts.length === 1) return { isNew: true, name: "" };
  return { isNew: false, name: parts[0] ?? "", runId: parts[1] === "runs" ? parts[2] : undefined };
}

function DesignerBody({ components }: { components: ComponentDoc[] }) {
  const library = useMemo(() => new Map(components.map((c) => [c.name, c])), [components]);
  const route = parseRoute(useParams()["*"] ?? "");
  const navigate = useNavigate();
  const flow = useReactFlow<StepNode, Edge>();
  const canvas = useRef<HTMLDivElement>(null);
  const fitOnOpen = useRef<boolean | null>(null);
  const measured = useNodesInitialized();

  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [parameters, setParameters] = useState<Record<string, ParameterSpec>>({});
  const [parameterErrors, setParameterErrors] = useState<Record<string, string>>({});
  const [nodes, setNodes] = useState<StepNode[]>([]);
  const [edges, setEdges] = useState<Edge[]>([]);
  const [loaded, setLoaded] = useState<string | null>(null); // the name drawn ("" for a new one)
  const [loadError, setLoadError] = useState<unknown>();
  const [savedKey, setSavedKey] = useState<string | null>(null);
  const [version, setVersion] = useState<number | null>(null); // the stored version drawn
  const [problems, setProblems] = useState<Problem[]>([]);
  const [sent, setSent] = useState<Definition>();
  const [notice, setNotice] = useState("");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [asking, setAsking] = useState(false); // the run form is open
  const [run, setRun] = useState<RunOut>();
  const [runError, setRunError] = useState<unknown>();

  const definition = useMemo(() => toDefinition({ name, description, parameters }, nodes, edges),
    [name, description, parameters, nodes, edges]);
  const dirty = savedKey === null || stableKey(definition) !== savedKey;

  const draw = useCallback((doc: Definition): Drawn => {
    const graph = toGraph(doc, library);
    const drawn = { name: doc.name, description: doc.description ?? "", parameters: doc.parameters ?? {}, ...graph };
    setName(drawn.name);
    setDescription(drawn.description);
    setParameters(drawn.parameters);
    setParameterErrors({});
    // A node drawn again keeps the size React Flow measured: its element is reused, so no
    // resize would come to measure it again, and edges are drawn only between measured nodes.
    setNodes((old) => {
      const measured = new Map(old.map((n) => [n.id, n.measured]));
      return drawn.nodes.map((n) => measured.get(n.id) ? { ...n, measured: measured.get(n.id) } : n);
    });
    setEdges(drawn.edges);
    setProblems([]);
    setSavedKey(stableKey(toDefinition(drawn, drawn.nodes, drawn.edges)));
    return drawn;
  }, [library]);

  // Draw what the address names; not again when the address changed because of what was
  // done here (saved under a name, a run started).
  useEffect(() => {
    const want = route.isNew ? "" : route.name;
    if (loaded === want) return;
    let stale = false;
    setLoadError(undefined);
    if (route.isNew) {
      draw({ name: "", description: "", parameters: {}, nodes: [], edges: [] });
      setSavedKey(null);
      setVersion(null);
      setRun(undefined);
      setLoaded("");
      return;
    }
    setLoaded(null);
    (async () => {
      try {
        const [pipeline, shown] = await Promise.all([
          get<PipelineOut>(`/pipelines/${encodeURIComponent(route.name)}`),
          route.runId ? get<RunOut>(`/pipelines/-/runs/${encodeURIComponent(route.runId)}`) : Promise.resolve(undefined),
        ]);
        if (stale) return;
        draw(shown?.definition ?? pipeline.definition);
        setVersion(shown?.version ?? pipeline.version);
        setRun(shown);
        setLoaded(route.name);
      } catch (exc) {
        if (!stale) { setLoadError(exc); setLoaded(route.name); }
      }
    })();
    return () => { stale = true; };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [route.isNew, route.name]);

  // The run named in the address, polled every second until it ends. A run of another version
  // than the one drawn draws its own (unless the canvas has unsaved changes).
  const drawnRef = useRef({ version, dirty });
  drawnRef.current = { version, dirty };
  useEffect(() => {
    if (!route.runId) { setRun(undefined); return; }
    let stop = false;
    let timer = 0;
    let first = true;
    const poll = async () => {
      try {
        const next = await get<RunOut>(`/pipelines/-/runs/${encodeURIComponent(route.runId!)}`);
        if (stop) return;
        const drawnVersion = drawnRef.current.version; // null while the page's first load is under way
        if (first && next.definition && drawnVersion !== null && next.version !== drawnVersion && !drawnRef.current.dirty) {
          draw(next.definition);
          setVersion(next.version);
        }
        first = false;
        setRun(next);
        setRunError(undefined);
        if (!RUN_FINISHED.includes(next.state)) timer = window.setTimeout(poll, 1000);
      } catch (exc) {
        if (stop) return;
        setRunError(exc);
        timer = window.setTimeout(poll, 3000);
      }
    };
    poll();
    return () => { stop = true; window.clearTimeout(timer); };
  }, [route.runId, draw]);

  // Leaving with unsaved changes asks first (LeaveGuard, below). Moving between this pipeline's
  // drawing and its runs keeps the canvas, and so do the designer's own moves (save, run),
  // which happen before the render that clears `unsaved`.
  const unsaved = dirty && nodes.length > 0;
  const ownMove = useRef(false);
  const stays = (path: string) => {
    if (ownMove.current) { ownMove.current = false; return true; }
    const next = /^\/pipelines\/([^/]+)/.exec(path)?.[1];
    return !route.isNew && next === route.name;
  };
  const go = (to: string, options?: { replace?: boolean }) => {
    ownMove.current = true;
    navigate(to, options);
  };

  // --- what the canvas shows: the run's states, the problems' nodes --------------------------
  const targets = useMemo(() => {
    const nodeIds = new Set<string>();
    const edgeIds = new Set<string>();
    for (const p of problems) {
      const t = problemTargets(p, sent);
      t.nodes.forEach((n) => nodeIds.add(n));
      if (t.edge !== undefined && sent) {
        const e = sent.edges[t.edge];
        if (e) edgeIds.add(`${e.from}->${e.to}`);
      }
    }
    return { nodeIds, edgeIds };
  }, [problems, sent]);
  const states = useMemo(() => new Map((run?.steps ?? []).map((s) => [s.node, s.state])), [run]);
  const overlay = useMemo(() => ({ states, problems: targets.nodeIds }), [states, targets]);
  const shownEdges = useMemo(() => edges.map((e) => {
    const bad = targets.edgeIds.has(e.id);
    const running = states.get(e.target) === "running" || (states.get(e.source) === "running");
    return bad || running ? { ...e, className: `${e.className ?? ""}${bad ? " edge-problem" : ""}`, animated: running } : e;
  }), [edges, targets, states]);

  // --- editing --------------------------------------------------------------------------------
  const onNodesChange = useCallback((changes: NodeChange<StepNode>[]) => setNodes((ns) => applyNodeChanges(changes, ns)), []);
  const onEdgesChange = useCallback((changes: EdgeChange<Edge>[]) => setEdges((es) => applyEdgeChanges(changes, es)), []);

  const isValidConnection: IsValidConnection<Edge> = useCallback(
    (c) => refusal(library, nodes, edges, c) === null, [library, nodes, edges]);

  const onConnect = useCallback((c: Connection) => {
    if (refusal(library, nodes, edges, c) !== null) return;
    const type = portType(library, nodes.find((n) => n.id === c.source), c.sourceHandle, "out");
    setEdges((es) => [...es, makeEdge(c.source, c.sourceHandle!, c.target, c.targetHandle!, type)]);
    setNotice(`Connected ${c.source}.${c.sourceHandle} → ${c.target}.${c.targetHandle}`);
  }, [library, nodes, edges]);

  const onConnectEnd = useCallback((_event: MouseEvent | TouchEvent, state: FinalConnectionState) => {
    if (!state.toHandle || state.isValid !== false || !state.fromHandle) return;
    const [from, to] = state.fromHandle.type === "source" ? [state.fromHandle, state.toHandle] : [state.toHandle, state.fromHandle];
    const why = refusal(library, nodes, edges, { source: from.nodeId, sourceHandle: from.id ?? null, target: to.nodeId, targetHandle: to.id ?? null });
    if (why) setNotice(`Not connected: ${why}`);
  }, [library, nodes, edges]);

  const addNode = useCallback((component: string, at?: { x: number; y: number }) => {
    const doc = library.get(component);
    if (!doc) return;
    let position = at;
    if (!position) {
      const box = canvas.current?.getBoundingClientRect();
      const centre = box ? flow.screenToFlowPosition({ x: box.left + box.width / 2, y: box.top + box.height / 2 }) : { x: 0, y: 0 };
      position = { x: centre.x - NODE_WIDTH / 2, y: centre.y - 40 };
      while (nodes.some((n) => Math.abs(n.position.x - position!.x) < 20 && Math.abs(n.position.y - position!.y) < 20)) {
        position = { x: position.x + 30, y: position.y + 30 };
      }
    }
    const id = newId(component, new Set(nodes.map((n) => n.id)));
    const params = Object.fromEntries(doc.params.filter((p) => p.default !== undefined && p.default !== null)
      .map((p) => [p.name, structuredClone(p.default)]));
    setNodes((ns) => [...ns.map((n) => n.selected ? { ...n, selected: false } : n), {
      id, type: "step", position, selected: true,
      data: { component, params, cache: true, texts: {}, errors: {} },
    }]);
    setEdges((es) => es.map((e) => e.selected ? { ...e, selected: false } : e));
    setNotice(`Added ${doc.title} as ${id}`);
  }, [library, nodes, flow]);

  const onDrop = (event: React.DragEvent) => {
    const component = event.dataTransfer.getData(DRAG_TYPE);
    if (!component) return;
    event.preventDefault();
    const at = flow.screenToFlowPosition({ x: event.clientX, y: event.clientY });
    addNode(component, { x: at.x - NODE_WIDTH / 2, y: at.y - 20 });
  };

  const selectedNode = nodes.find((n) => n.selected);
  const selectedEdge = selectedNode ? undefined : edges.find((e) => e.selected);

  const updateNode = (id: string, update: (n: StepNode) => StepNode) =>
    setNodes((ns) => ns.map((n) => n.id === id ? update(n) : n));

  const onParam = (id: string, param: string, change: FieldChange) => {
    // What was said about this field is answered by typing in it.
    setProblems((ps) => ps.filter((p) => !(p.path.endsWith(`.params.${param}`) && problemTargets(p, sent).nodes[0] === id)));
    editParam(id, param, change);
  };

  const editParam = (id: string, param: string, change: FieldChange) => updateNode(id, (n) => {
    const params = { ...n.data.params };
    const texts = { ...n.data.texts };
    const errors = { ...n.data.errors };
    delete errors[param];
    if (change.unset) {
      delete params[param];
      delete texts[param];
    } else {
      if (change.text !== undefined) texts[param] = change.text; else delete texts[param];
      if (change.error) errors[param] = change.error; else params[param] = change.value;
    }
    return { ...n, data: { ...n.data, params, texts, errors } };
  });

  const rename = (from: string, to: string) => {
    setNodes((ns) => ns.map((n) => n.id === from ? { ...n, id: to } : n));
    setEdges((es) => es.map((e) => {
      if (e.source !== from && e.target !== from) return e;
      const source = e.source === from ? to : e.source;
      const target = e.target === from ? to : e.target;
      return { ...makeEdge(source, e.sourceHandle!, target, e.targetHandle!), className: e.className, selected: e.selected };
    }));
  };

  const connectInput = (node: string, port: string, from: string) => {
    setEdges((es) => {
      const rest = es.filter((e) => !(e.target === node && e.targetHandle === port));
      if (!from) return rest;
      const dot = from.lastIndexOf(".");
      const source = from.slice(0, dot);
      const handle = from.slice(dot + 1);
      const type = portType(library, nodes.find((n) => n.id === source), handle, "out");
      return [...rest, makeEdge(source, handle, node, port, type)];
    });
  };

  const deleteNode = (id: string) => {
    setNodes((ns) => ns.filter((n) => n.id !== id));
    setEdges((es) => es.filter((e) => e.source !== id && e.target !== id));
    setNotice(`Deleted step ${id}`);
  };

  const select = (id: string) => {
    setNodes((ns) => ns.map((n) => ({ ...n, selected: n.id === id })));
    setEdges((es) => es.map((e) => e.selected ? { ...e, selected: false } : e));
    const node = nodes.find((n) => n.id === id);
    if (node) {
      const width = node.measured?.width ?? NODE_WIDTH;
      const height = node.measured?.height ?? 100;
      flow.setCenter(node.position.x + width / 2, node.position.y + height / 2, { zoom: flow.getZoom(), duration: 250 });
    }
  };

  // --- the view ------------------------------------------------------------------------------------
  /** Fit the pipeline to the canvas, but no smaller than can be read: a long one shows its
   *  first steps, the rest a scroll away (scrolling moves the canvas, as a page; Ctrl+scroll
   *  or a pinch zooms). */
  const showReadable = useCallback((duration = 0) => {
    const box = canvas.current?.getBoundingClientRect();
    const drawn = flow.getNodes();
    if (!box || !drawn.length) return;
    flow.setViewport(readableView(flow.getNodesBounds(drawn), box), { duration });
  }, [flow]);

  // As a pipeline opens, once its steps are measured; not for the first step dropped on an
  // empty canvas.
  useEffect(() => {
    if (!measured || !fitOnOpen.current || !flow.getNodes().every((n) => n.measured?.width)) return;
    fitOnOpen.current = false;
    showReadable();
  }, [measured, loaded, flow, showReadable]);

  /** Lay every step out again, top to bottom, at the sizes they are drawn. */
  const arrange = () => {
    const placed = layout(nodes.map((n) => {
      const ports = portsOf(library.get(n.data.component), n.data.params);
      const size = nodeSize(ports.inputs.length, ports.outputs.length);
      return { id: n.id, width: n.measured?.width ?? size.width, height: n.measured?.height ?? size.height };
    }), edges);
    setNodes((ns) => ns.map((n) => placed.has(n.id) ? { ...n, position: placed.get(n.id)! } : n));
    setNotice("Arranged top to bottom.");
    window.setTimeout(() => showReadable(200), 50);
  };

  // --- validate, save, run ----------------------------------------------------------------------
  const localProblems = (): Problem[] => {
    const out: Problem[] = [];
    if (!NAME.test(name)) {
      out.push({ path: "name", message: `${JSON.stringify(name)} is not a pipeline name: 1-63 lower-case letters, digits or '-'` });
    }
    for (const [p, message] of Object.entries(parameterErrors)) out.push({ path: `parameters.${p}.default`, message });
    nodes.forEach((n, i) => {
      for (const [key, message] of Object.entries(n.data.errors)) out.push({ path: `nodes[${i}] (${n.id}).params.${key}`, message });
    });
    return out;
  };

  const report = (exc: unknown, doc: Definition) => {
    const details = exc instanceof ApiError ? exc.details as { problems?: Problem[] } | null : null;
    if (details?.problems?.length) {
      setProblems(details.problems);
      setSent(doc);
      setError(undefined);
    } else {
      setError(exc);
    }
  };

  const validate = async () => {
    setError(undefined);
    setNotice("");
    const doc = definition;
    const mine = localProblems();
    setBusy(true);
    try {
      await post("/pipelines/-/validate", doc);
      setProblems(mine);
      setSent(doc);
      if (!mine.length) setNotice("Valid: no problems.");
    } catch (exc) {
      const details = exc instanceof ApiError ? exc.details as { problems?: Problem[] } | null : null;
      if (details?.problems) {
        const paths = new Set(details.problems.map((p) => p.path));
        setProblems([...mine.filter((p) => !paths.has(p.path)), ...details.problems]);
        setSent(doc);
      } else {
        setError(exc);
      }
    } finally {
      setBusy(false);
    }
  };

  /** Store the canvas as a new version (when it changed); the stored name and version. */
  const save = async (): Promise<{ name: string; version: number } | undefined> => {
    setError(undefined);
    setNotice("");
    const mine = localProblems();
    if (mine.length) {
      setProblems(mine);
      setSent(definition);
      setNotice("Not saved: fix the problems first.");
      return undefined;
    }
    const doc = definition;
    setBusy(true);
    try {
      const out = await post<PipelineOut>("/pipelines", doc);
      setProblems([]);
      setSavedKey(stableKey(doc));
      setVersion(out.version);
      setNotice(out.created ? `Saved version ${out.version}.` : `No changes since version ${out.version}.`);
      if (route.isNew || route.name !== out.name) {
        setLoaded(out.name);
        go(`/pipelines/${out.name}`, { replace: route.isNew });
      }
      return { name: out.name, version: out.version };
    } catch (exc) {
      report(exc, doc);
      setNotice("Not saved.");
      return undefined;
    } finally {
      setBusy(false);
    }
  };

  const start = async (stored: { name: string; version: number }, values: Record<string, string>, cluster: string) => {
    setBusy(true);
    try {
      const started = await post<RunOut>(`/pipelines/${stored.name}/runs`, { parameters: values, cluster, version: stored.version });
      setAsking(false);
      setRun(started);
      setNotice(`Started run ${started.id}.`);
      setLoaded(stored.name);
      go(`/pipelines/${stored.name}/runs/${started.id}`);
      // The canvas is shorter above the run's panel: fit the steps to it again.
      window.setTimeout(() => showReadable(200), 100);
    } catch (exc) {
      setError(exc);
    } finally {
      setBusy(false);
    }
  };

  const runIt = async () => {
    const stored = dirty || version === null ? await save() : { name, version };
    if (!stored) return;
    if (Object.keys(parameters).length) setAsking(true);
    else await start(stored, {}, "local");
  };

  const runAction = async (action: "cancel" | "retry") => {
    if (!run) return;
    setBusy(true);
    setRunError(undefined);
    try {
      const next = await post<RunOut>(`/pipelines/-/runs/${run.id}/${action}`);
      setRun(next);
      if (action === "retry") navigate(`/pipelines/${run.pipeline}/runs/${next.id}`);
    } catch (exc) {
      setRunError(exc);
    } finally {
      setBusy(false);
    }
  };

  // Fit the view to a pipeline as it opens; not to the first node dropped on an empty one.
  if (loaded === null && !loadError) {
    fitOnOpen.current = null;
    return <Loading what="Loading the pipeline" />;
  }
  if (fitOnOpen.current === null) fitOnOpen.current = nodes.length > 0;
  if (loadError) {
    return (
      <>
        <div className="breadcrumbs"><Link to="/pipelines">Pipelines</Link> / {route.name}</div>
        <PageHeader title={route.name} />
        <ErrorBox error={loadError} />
      </>
    );
  }

  const nodeProblems: Record<string, string> = {};
  if (selectedNode) {
    for (const p of problems) {
      const m = /\.params\.([^.]+)$/.exec(p.path);
      if (m && problemTargets(p, sent).nodes[0] === selectedNode.id) nodeProblems[m[1]] = p.message;
      const input = /input '([^']+)'/.exec(p.message);
      if (p.path === `node ${selectedNode.id}` && input) nodeProblems[`input:${input[1]}`] = p.message;
    }
  }

  return (
    <LibraryContext.Provider value={library}>
      <div className="breadcrumbs"><Link to="/pipelines">Pipelines</Link> / {route.isNew ? "new" : route.name}</div>
      <PageHeader title={route.isNew ? "New pipeline" : route.name}>
        {version !== null && <span className="muted">version {version}{dirty ? " · unsaved changes" : ""}</span>}
        <button type="button" onClick={validate} disabled={busy}>Validate</button>
        <button type="button" onClick={save} disabled={busy}>Save</button>
        <button type="button" className="primary" onClick={runIt} disabled={busy || nodes.length === 0}>Run</button>
      </PageHeader>
      <div className="pipeline-meta">
        <div className="field">
          <label htmlFor="pipeline-name">Name</label>
          <input id="pipeline-name" value={name} placeholder="churn-model" spellCheck={false}
                 aria-invalid={name && !NAME.test(name) ? true : undefined}
                 onChange={(e) => setName(e.target.value)} />
        </div>
        <div className="field grow">
          <label htmlFor="pipeline-description">Description</label>
          <input id="pipeline-description" value={description} onChange={(e) => setDescription(e.target.value)} />
        </div>
      </div>
      <div className="status-line" role="status" aria-live="polite">{notice}</div>
      <ErrorBox error={error} onClose={() => setError(undefined)} />
      {problems.length > 0 && (
        <div className="problems" role="alert" aria-label="Problems">
          <strong>{problems.length === 1 ? "1 problem" : `${problems.length} problems`}</strong>
          <ul>
            {problems.map((p, i) => {
              const target = problemTargets(p, sent).nodes[0];
              return (
                <li key={i}>
                  {target && nodes.some((n) => n.id === target)
                    ? <button type="button" className="link" onClick={() => select(target)}><code>{p.path}</code></button>
                    : <code>{p.path}</code>}: {p.message}
                </li>
              );
            })}
          </ul>
        </div>
      )}
      {asking && (
        <RunDialog parameters={parameters} busy={busy}
                   onStart={(values, cluster) => start({ name, version: version! }, values, cluster)}
                   onCancel={() => setAsking(false)} />
      )}
      <div className={run ? "designer with-run" : "designer"}>
        <Palette components={components} onAdd={(c) => addNode(c)} />
        <div className="canvas" ref={canvas} onDrop={onDrop}
             onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; }}>
          <OverlayContext.Provider value={overlay}>
            <ReactFlow<StepNode, Edge>
              nodes={nodes} edges={shownEdges} nodeTypes={NODE_TYPES}
              onNodesChange={onNodesChange} onEdgesChange={onEdgesChange} onConnect={onConnect}
              onConnectEnd={onConnectEnd} isValidConnection={isValidConnection}
              deleteKeyCode={["Delete", "Backspace"]} panOnScroll
              minZoom={0.2} maxZoom={2} proOptions={{ hideAttribution: true }}
              aria-label="Pipeline canvas">
              <Background gap={16} />
              <Controls showFitView={false}>
                <ControlButton onClick={() => showReadable(200)} title="Fit view (no smaller than readable)"
                               aria-label="Fit view">
                  <svg viewBox="0 0 32 30" aria-hidden="true"><path d="M3.7 11.8v-6.4c0-.9.7-1.7 1.7-1.7h6.4V0H5.3C2.4 0 0 2.4 0 5.3v6.4h3.7zM0 18.1v6.4C0 27.5 2.4 30 5.3 30h6.4v-3.7H5.3c-.9 0-1.7-.8-1.7-1.7v-6.4H0zM26.7 3.7c.9 0 1.7.7 1.7 1.7v6.4H32V5.3C32 2.4 29.6 0 26.7 0h-6.4v3.7h6.4zM28.3 24.6c0 .9-.7 1.7-1.7 1.7h-6.4V30h6.4c2.9 0 5.3-2.4 5.3-5.3v-6.4h-3.7v6.3z" /></svg>
                </ControlButton>
                <ControlButton onClick={arrange} disabled={nodes.length === 0} title="Arrange the steps top to bottom"
                               aria-label="Arrange top to bottom">
                  <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M9 2h6v5H9zM2 17h6v5H2zM16 17h6v5h-6zM11 7h2v4h6v6h-2v-4H7v4H5v-6h6z" /></svg>
                </ControlButton>
              </Controls>
            </ReactFlow>
          </OverlayContext.Provider>
          {nodes.length === 0 && (
            <div className="canvas-empty muted">Drag components here from the palette, or select one and press Enter.</div>
          )}
        </div>
        <div className="side">
          {selectedNode ? (
            <NodePanel node={selectedNode} nodes={nodes} edges={edges} library={library} parameters={parameters}
                       problems={nodeProblems}
                       onParam={(param, change) => onParam(selectedNode.id, param, change)}
                       onRename={(to) => rename(selectedNode.id, to)}
                       onCache={(cache) => updateNode(selectedNode.id, (n) => ({ ...n, data: { ...n.data, cache } }))}
                       onConnectInput={(port, from) => connectInput(selectedNode.id, port, from)}
                       onDelete={() => deleteNode(selectedNode.id)} />
          ) : selectedEdge ? (
            <EdgePanel edge={selectedEdge} onDelete={() => setEdges((es) => es.filter((e) => e.id !== selectedEdge.id))} />
          ) : (
            <PipelinePanel parameters={parameters} onChange={setParameters}
                           errors={parameterErrors} setErrors={setParameterErrors}>
              {!route.isNew && route.name && <RunHistory pipeline={route.name} current={route.runId} />}
            </PipelinePanel>
          )}
        </div>
      </div>
      <LeaveGuard when={unsaved} stays={stays} title="Leave without saving?" confirm="Leave">
        <p>The pipeline has changes that are not saved; leaving drops them. Save keeps them as a new version.</p>
      </LeaveGuard>
      {run && (
        <RunPanel run={run} error={runError} busy={busy} onSelect={select}
                  onCancel={() => runAction("cancel")} onRetry={() => runAction("retry")}
                  onClose={() => navigate(`/pipelines/${run.pipeline}`)} />
      )}
    </LibraryContext.Provider>
  );
}
