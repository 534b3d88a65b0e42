//! The web dashboard's files (worker/cluster/dashboard/), built into the binary so every
//! JobManager and `weir run` serves it with no other process and no network access. Plain
//! JavaScript modules, CSS and inline SVG: there is no build step to reproduce.

/// One file of the dashboard.
pub(crate) struct Asset {
    pub(crate) body: &'static [u8],
    pub(crate) content_type: &'static str,
}

macro_rules! assets {
    ($($name:literal => $type:literal),* $(,)?) => {
        /// The file called `name`, if the dashboard has it.
        pub(crate) fn asset(name: &str) -> Option<Asset> {
            match name {
                $($name => Some(Asset {
                    body: include_bytes!(concat!("../dashboard/", $name)),
                    content_type: $type,
                }),)*
                _ => None,
            }
        }
    };
}

assets! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "graph.js" => "text/javascript; charset=utf-8",
    "pages.js" => "text/javascript; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
}
