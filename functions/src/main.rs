//! Every Lambda function of the service is this one binary, built once and deployed as each
//! function's `bootstrap`: the function's `Handler` in template.yaml names which one it is
//! (`create-campaign`, `sender`, …; see `shared::lambda::serve`). Run it by hand with the name
//! as its argument or in `_HANDLER`.

fn main() -> Result<(), shared::lambda::Error> {
    match shared::lambda::function_name() {
        Some(name) => shared::lambda::serve(&name),
        None => Err(format!(
            "which function? set _HANDLER (the Handler in template.yaml) to one of: {}",
            shared::lambda::function_names().join(", ")
        )
        .into()),
    }
}
