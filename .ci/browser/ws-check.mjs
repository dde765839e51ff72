// Serves page.html on loopback, opens it in headless Chromium and runs its check against the
// gateway: `node ws-check.mjs <gateway base URL> <bearer token>`. Exits non-zero on any failure.
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { chromium } from "playwright-core";

const [base, token] = process.argv.slice(2);
if (!base || !token) {
  console.error("usage: node ws-check.mjs <gateway base URL> <bearer token>");
  process.exit(2);
}
const page = await readFile(new URL("./page.html", import.meta.url));
const server = createServer((request, response) => {
  response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  response.end(page);
});
await new Promise((listening) => server.listen(0, "127.0.0.1", listening));
const pageUrl = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  timeout: 60_000,
});
let failed = false;
try {
  const tab = await browser.newPage();
  tab.on("console", (message) => console.log(`browser console: ${message.text()}`));
  await tab.goto(pageUrl);
  await tab.waitForFunction(() => document.getElementById("status").textContent === "ready");
  const wsUrl = `${base.replace(/^http/, "ws")}/ws`;
  const seen = await tab.evaluate(([url, bearer]) => window.runCheck(url, bearer), [wsUrl, token]);
  const problems = [];
  if (seen.protocol !== "purest") problems.push(`selected subprotocol ${JSON.stringify(seen.protocol)}, expected "purest"`);
  if (JSON.stringify(seen.subscribed) !== JSON.stringify(["newUserRegistered"])) problems.push(`subscribed to ${JSON.stringify(seen.subscribed)}`);
  if (seen.result.email !== seen.email) problems.push(`the command answered ${JSON.stringify(seen.result)}`);
  if (seen.event.id !== seen.result.id) problems.push(`the pushed event ${JSON.stringify(seen.event)} is not the registered user`);
  if (problems.length) {
    failed = true;
    console.error(`browser-check: ${problems.join("; ")}`);
  } else {
    console.log(`browser-check: Chromium ${browser.version()} connected with a subprotocol token, registered ${seen.email} and saw newUserRegistered pushed`);
  }
} catch (error) {
  failed = true;
  console.error(`browser-check: ${error.message}`);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
