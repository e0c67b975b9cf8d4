import { Component } from "react";
import { ErrorBox } from "./ErrorBox";

interface Props { children: React.ReactNode; address: string }

/** What a page that failed to draw shows instead of a blank screen: the error, and a way on.
 *  Going to another address draws the page again (not a remount: pages that change their own
 *  address, as the designer does on save, keep their state). */
export class PageBoundary extends Component<Props, { error?: Error }> {
  state: { error?: Error } = {};

  componentDidUpdate(previous: Props) {
    if (this.state.error && previous.address !== this.props.address) this.setState({ error: undefined });
  }

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  componentDidCatch(error: Error) {
    console.error("the page failed to draw", error);
  }

  render() {
    const { error } = this.state;
    if (!error) return this.props.children;
    // A chunk that no longer exists: the server was upgraded while this tab was open.
    const stale = /dynamically imported module|Failed to fetch|Importing a module script failed/i.test(error.message);
    return (
      <div className="stack">
        <ErrorBox error={stale
          ? "This page's code changed on the server since the console was opened. Reload to get the new one."
          : `This page failed to draw: ${error.message}`} />
        <div className="row">
          <button type="button" className="primary" onClick={() => window.location.reload()}>Reload</button>
          <button type="button" onClick={() => this.setState({ error: undefined })}>Try again</button>
        </div>
      </div>
    );
  }
}
