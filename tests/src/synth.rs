//! Components written byte by byte for the tests: the shapes stock
//! toolchains or attackers produce (extra imports, a compile-cost bomb, a big
//! initial memory) without needing those toolchains.

const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\0\x01\0";
const MODULE_HEADER: &[u8] = b"\0asm\x01\0\0\0";

fn put_leb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn leb_bytes(value: u64) -> Vec<u8> {
    let mut v = Vec::new();
    put_leb(&mut v, value);
    v
}

fn section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    put_leb(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn name(out: &mut Vec<u8>, name: &str) {
    put_leb(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

/// A component that only imports `names`, each an empty instance type:
/// what a toolchain's extra imports look like to the host's check.
pub fn importing(names: &[&str]) -> Vec<u8> {
    let mut out = COMPONENT_HEADER.to_vec();
    section(&mut out, 7, &[0x01, 0x42, 0x00]); // one type: instance {}
    let mut imports = leb_bytes(names.len() as u64);
    for n in names {
        imports.push(0x00);
        name(&mut imports, n);
        imports.extend_from_slice(&[0x05, 0x00]); // instance of type 0
    }
    section(&mut out, 10, &imports);
    out
}

/// A component holding one core module of `n` empty functions: cheap to
/// write, expensive to compile (the compile-cost bomb).
pub fn empty_functions(n: u64) -> Vec<u8> {
    let mut module = MODULE_HEADER.to_vec();
    section(&mut module, 1, &[0x01, 0x60, 0x00, 0x00]);
    let mut funcs = leb_bytes(n);
    funcs.extend(std::iter::repeat_n(0u8, n as usize));
    section(&mut module, 3, &funcs);
    let mut code = leb_bytes(n);
    for _ in 0..n {
        code.extend_from_slice(&[0x02, 0x00, 0x0b]);
    }
    section(&mut module, 10, &code);
    let mut out = COMPONENT_HEADER.to_vec();
    section(&mut out, 1, &module);
    out
}

/// A component holding one core module with a memory of `pages` x 64 KiB.
pub fn memory_pages(pages: u64) -> Vec<u8> {
    let mut module = MODULE_HEADER.to_vec();
    let mut memory = vec![0x01, 0x00];
    put_leb(&mut memory, pages);
    section(&mut module, 5, &memory);
    let mut out = COMPONENT_HEADER.to_vec();
    section(&mut out, 1, &module);
    out
}
