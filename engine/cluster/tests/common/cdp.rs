//! Drives a headless Chromium page through the DevTools protocol (a
//! WebSocket of JSON commands): evaluate script, choose a file for an
//! `<input type=file>`, type text, wait for the page to get somewhere.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// One page of a headless Chromium of its own.
pub struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// The page's session on the browser's connection.
    session: Option<String>,
    browser: Child,
    _profile: tempfile::TempDir,
}

impl Page {
    /// Starts Chromium on `url` and connects to its page.
    pub fn open(url: &str) -> Page {
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Command::new("chromium")
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium is not installed: run scripts/install-deps.sh");
        let mut lines = BufReader::new(browser.stderr.take().unwrap()).lines();
        let ws_url = loop {
            let line = lines.next().expect("chromium ended before its DevTools listened").unwrap();
            if let Some(rest) = line.strip_prefix("DevTools listening on ") {
                break rest.trim().to_string();
            }
        };
        // Keep draining its error output.
        std::thread::spawn(move || lines.for_each(drop));
        let (ws, _) = tungstenite::connect(ws_url.as_str()).unwrap();
        let mut page = Page { ws, next_id: 1, session: None, browser, _profile: profile };
        let deadline = Instant::now() + Duration::from_secs(20);
        let target = loop {
            let targets = page.call("Target.getTargets", json!({}));
            let found = targets["targetInfos"].as_array().and_then(|t| t.iter().find(|t| t["type"] == "page").cloned());
            if let Some(t) = found {
                break t["targetId"].clone();
            }
            assert!(Instant::now() < deadline, "chromium has no page: {targets}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let attached = page.call("Target.attachToTarget", json!({"targetId": target, "flatten": true}));
        page.session = attached["sessionId"].as_str().map(String::from);
        page
    }

    /// Sends command `method` and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        self.ws.send(Message::text(command.to_string())).unwrap();
        loop {
            let msg = self.ws.read().unwrap();
            let Ok(text) = msg.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of script `js` (a promise is awaited).
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": js, "returnByValue": true, "awaitPromise": true}));
        assert!(r.get("exceptionDetails").is_none(), "{js} threw: {r}");
        r["result"]["value"].clone()
    }

    /// Waits up to `within` for `js` to be truthy; returns its value.
    pub fn wait_for(&mut self, js: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(js);
            if !(v.is_null() || v == false || v == "") {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {js}; the page shows: {}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Chooses `path` in the file input `selector`, as a user would.
    pub fn choose_file(&mut self, selector: &str, path: &str) {
        let doc = self.call("DOM.getDocument", json!({}));
        let node = self.call("DOM.querySelector", json!({"nodeId": doc["root"]["nodeId"], "selector": selector}));
        self.call("DOM.setFileInputFiles", json!({"files": [path], "nodeId": node["nodeId"]}));
    }

    /// Clicks `selector` and types `text` into it.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        self.eval(&format!("document.querySelector({}).focus()", json!(selector)));
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// Clicks the middle of `selector` with the mouse.
    pub fn click(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.scrollIntoView(); const b = e.getBoundingClientRect(); \
             return [b.x + b.width / 2, b.y + b.height / 2]; }})()",
            json!(selector)
        ));
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.browser.kill();
        let _ = self.browser.wait();
    }
}
