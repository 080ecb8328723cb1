// What the demo pages put on window for the browser tests (e2e/) to read.
interface Window {
  demo: Record<string, any>;
}
