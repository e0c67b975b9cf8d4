import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The built console goes into the Python package, which the control plane serves at "/".
// CUMULO_CONSOLE_OUT builds it somewhere else (a test's own copy).
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: process.env.CUMULO_CONSOLE_OUT ?? "../src/cumulo/console/dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
  },
  // `npm run dev` serves the source with hot reload; the API stays on the running server.
  server: { proxy: Object.fromEntries(["/api", "/login", "/logout", "/mlflow"]
    .map((path) => [path, "http://127.0.0.1:8080"])) },
});
