//! A valid component that does not implement the `handler` world: the host must refuse it.

wit_bindgen::generate!({
    inline: "
        package streamhost:wrong-world;
        world wrong { export run: func(); }
    ",
});

struct WrongWorld;

impl Guest for WrongWorld {
    fn run() {}
}

export!(WrongWorld);
