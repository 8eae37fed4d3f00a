// Where effects and log lines go: the host's imports inside a component
// (installed by the entry module build.js generates), or the recorder of
// testing.js when run under node.

let current = null;

/** Installs a backend; returns the previous one. */
export function setBackend(backend) {
  const previous = current;
  current = backend;
  return previous;
}

/** The backend in use; throws outside a host or a test harness. */
export function backend() {
  if (current === null) {
    throw new Error(
      'streamhost effects and logs need a host: run the handler in a component, ' +
        "or under node through invoke(handle, msg) from '@streamhost/sdk/testing'",
    );
  }
  return current;
}
