// A hostile guest for the containment tests: field `op` = `spin` loops
// forever, `hog` allocates until something stops it, anything else is acked.

export function handle(msg) {
  const op = msg.fieldStr('op');
  if (op === 'spin') {
    let n = 0;
    for (;;) n++;
  }
  if (op === 'hog') {
    const hoard = [];
    for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
  }
}
