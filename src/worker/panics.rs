//! Turning a handler's panic into a message: what it said and where.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Install (once per process) a panic hook that remembers where the panic
/// happened, then lets the previous hook print as usual.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| l.to_string());
            LAST_LOCATION.with(|cell| *cell.borrow_mut() = location);
            previous(info);
        }));
    });
}

/// The panic's message, with its location when the hook saw it.
pub(crate) fn describe(panic: Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    };
    match LAST_LOCATION.with(|cell| cell.borrow_mut().take()) {
        Some(loc) => format!("{message} (at {loc})"),
        None => message,
    }
}
