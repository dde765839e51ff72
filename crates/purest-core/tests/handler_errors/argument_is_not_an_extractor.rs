use purest_core::prelude::*;

async fn register(name: String) -> Result<String, HandledError> {
    Ok(name)
}

fn main() {
    let _ = Command::new("register", register);
}
