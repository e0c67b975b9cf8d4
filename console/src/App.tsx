import { lazy, Suspense, useEffect, useMemo, useState } from "react";
import { createBrowserRouter, NavLink, Route, RouterProvider, Routes, useLocation } from "react-router-dom";
import { ApiError, chooseProject, currentProject, get, Me, onSignedOut, signIn, signInOptions, signOut } from "./api";
import { ErrorBox, Loading } from "./components/ErrorBox";
import { AlertBanner } from "./components/AlertBanner";
import { allowedEntries, Menu } from "./components/Menu";
import { PageBoundary } from "./components/PageBoundary";

// Each page is its own chunk: the first load carries only the shell and the page asked for.
const Home = lazy(() => import("./pages/Home"));
const Files = lazy(() => import("./pages/Files"));
const Tables = lazy(() => import("./pages/Tables"));
const Sql = lazy(() => import("./pages/Sql"));
const Jobs = lazy(() => import("./pages/Jobs"));
const Models = lazy(() => import("./pages/Models"));
const Endpoints = lazy(() => import("./pages/Endpoints"));
const Costs = lazy(() => import("./pages/Costs"));
const Pipelines = lazy(() => import("./pages/Pipelines"));
const Streams = lazy(() => import("./pages/Streams"));
const Notebooks = lazy(() => import("./pages/Notebooks"));
const Users = lazy(() => import("./pages/Users"));
const Groups = lazy(() => import("./pages/Groups"));
const Roles = lazy(() => import("./pages/Roles"));
const Policies = lazy(() => import("./pages/Policies"));
const Access = lazy(() => import("./pages/Access"));
const Projects = lazy(() => import("./pages/Projects"));
const Audit = lazy(() => import("./pages/Audit"));
const Backups = lazy(() => import("./pages/Backups"));

/** Who is signed in, and the menu entries they may open. */
interface Session { me: Me; shown: Set<string> }

async function startSession(): Promise<Session> {
  const me = await get<Me>("/me");
  // A project chosen here before that is no longer theirs is forgotten; whoever holds rights
  // only in projects starts in the first of them.
  if (currentProject() && !me.projects.includes(currentProject())) chooseProject("");
  if (!currentProject() && !me.is_admin && me.projects.length > 0) {
    const everywhere = await allowedEntries();
    if (everywhere.size <= 1) chooseProject(me.projects[0]);  // Home alone: nothing outside
  }
  return { me, shown: await allowedEntries() };
}

export default function App() {
  const [session, setSession] = useState<Session | null>();
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    startSession().then(setSession, (exc) => {
      if (exc instanceof ApiError && exc.status === 401) setSession(null);
      else setError(exc);
    });
    return onSignedOut(() => setSession(null));
  }, []);

  // A data router (not <BrowserRouter>), so that a page may hold the user back from leaving
  // it with unsaved work (useBlocker); the pages' own <Routes> work below its one route.
  const router = useMemo(() => session ? createBrowserRouter([
    { path: "*", element: <Shell session={session} onSignOut={() => signOut().finally(() => setSession(null))} /> },
  ]) : null, [session]);

  if (error) return <main className="center"><ErrorBox error={error} /></main>;
  if (session === undefined) return <main className="center"><Loading /></main>;
  if (session === null || !router) return <SignIn onSignedIn={setSession} />;
  return <RouterProvider router={router} />;
}

function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [token, setToken] = useState("");
  const [withToken, setWithToken] = useState(false);
  const [sso, setSso] = useState<string | null>(null);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    signInOptions().then((options) => setSso(options.sso), () => setSso(null));
  }, []);
  const ready = withToken ? token.trim() !== "" : user.trim() !== "" && password !== "";
  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await signIn(withToken ? { token: token.trim() } : { user: user.trim(), password });
      onSignedIn(await startSession());
    } catch (exc) {
      setError(exc);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form onSubmit={submit} aria-label="Sign in">
        <h1><span className="logo">☁</span> Cumulo</h1>
        {withToken ? (
          <>
            <p>Sign in with a Cumulo token. <code>make up</code> printed the admin token;
              {" "}<code>cumulo tokens create console</code> makes another.</p>
            <label htmlFor="token">Token</label>
            <input id="token" type="password" value={token} autoFocus required autoComplete="off"
                   onChange={(e) => setToken(e.target.value)} />
          </>
        ) : (
          <>
            <label htmlFor="user">User name</label>
            <input id="user" value={user} autoFocus required autoComplete="username"
                   onChange={(e) => setUser(e.target.value)} />
            <label htmlFor="password">Password</label>
            <input id="password" type="password" value={password} required
                   autoComplete="current-password" onChange={(e) => setPassword(e.target.value)} />
          </>
        )}
        <ErrorBox error={error} />
        <button type="submit" className="primary" disabled={busy || !ready}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {sso && <p><a href="/login/sso?next=/">Sign in with {sso}</a></p>}
        <p>
          <button type="button" className="link" onClick={() => { setWithToken(!withToken); setError(undefined); }}>
            {withToken ? "Sign in with a user name and password" : "Sign in with a token instead"}
          </button>
        </p>
      </form>
    </main>
  );
}

function Shell({ session: { me, shown }, onSignOut }: { session: Session; onSignOut: () => void }) {
  const [menu, setMenu] = useState(false);
  const location = useLocation();
  useEffect(() => setMenu(false), [location.pathname]);
  return (
    <div className="shell">
      <a className="skip" href="#main">Skip to content</a>
      <header className="topbar">
        <button className="menu-button" aria-label="Menu" aria-expanded={menu} onClick={() => setMenu(!menu)}>☰</button>
        <NavLink to="/" className="brand"><span className="logo">☁</span> Cumulo</NavLink>
        <span className="spacer" />
        {me.projects.length > 0 && (
          <label className="project-picker">
            <span className="muted">Project</span>{" "}
            <select value={currentProject()} aria-label="Project"
                    onChange={(e) => { chooseProject(e.target.value); window.location.reload(); }}>
              <option value="">{me.is_admin ? "All" : "None"}</option>
              {me.projects.map((name) => <option key={name} value={name}>{name}</option>)}
            </select>
          </label>
        )}
        <a href="/docs" className="muted">API</a>
        <span className="who" title={me.is_admin ? "administrator" : "user"}>{me.user}</span>
        <button className="link" onClick={onSignOut}>Sign out</button>
      </header>
      <Menu shown={shown} open={menu} />
      <main id="main" className="content" tabIndex={-1}>
        <AlertBanner />
        <PageBoundary address={location.pathname}>
        <Suspense fallback={<Loading />}>
          <Routes>
            <Route path="/" element={<Home />} />
            <Route path="/files/*" element={<Files />} />
            <Route path="/tables/*" element={<Tables />} />
            <Route path="/sql" element={<Sql />} />
            <Route path="/jobs/*" element={<Jobs />} />
            <Route path="/models/*" element={<Models />} />
            <Route path="/endpoints/*" element={<Endpoints />} />
            <Route path="/pipelines/*" element={<Pipelines />} />
            <Route path="/streams/*" element={<Streams />} />
            <Route path="/notebooks" element={<Notebooks />} />
            <Route path="/costs" element={<Costs />} />
            <Route path="/users/*" element={<Users />} />
            <Route path="/groups/*" element={<Groups />} />
            <Route path="/roles" element={<Roles />} />
            <Route path="/policies/*" element={<Policies />} />
            <Route path="/access" element={<Access />} />
            <Route path="/projects/*" element={<Projects />} />
            <Route path="/audit" element={<Audit />} />
            <Route path="/backups" element={<Backups />} />
            <Route path="*" element={<ErrorBox error={`No page at ${location.pathname}`} />} />
          </Routes>
        </Suspense>
        </PageBoundary>
      </main>
    </div>
  );
}
