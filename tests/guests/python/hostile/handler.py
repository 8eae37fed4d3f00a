"""A hostile guest for the containment tests: field `op` = `spin` loops
forever, `hog` allocates until something stops it, anything else is acked."""

import streamhost


@streamhost.handler
def handle(msg: streamhost.Message) -> None:
    op = msg.field_str("op")
    if op == "spin":
        n = 0
        while True:
            n += 1
    if op == "hog":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
