// Drives the streamhost dashboard in headless Debian chromium for
// tests/tests/dashboard.rs. Protocol: for each step this prints one line
// `@@ <step> <json>` on stdout and waits for one line on stdin: `ok` to go
// on (the Rust side checked Redis and the host meanwhile), anything else to
// stop. Screenshots go to $SCREENSHOTS.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const url = process.env.DASH_URL;
const token = process.env.DASH_TOKEN;
const plugin = process.env.DASH_PLUGIN;
const shots = process.env.SCREENSHOTS;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function step(name, data) {
  process.stdout.write(`@@ ${name} ${JSON.stringify(data ?? {})}\n`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== "ok") throw new Error(`stopped after ${name}: ${value}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
  page.setDefaultTimeout(20000);
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  const text = (sel) => page.locator(sel).first().innerText();

  // Overview, before signing in.
  await page.goto(url + "/#/");
  const row = page.locator(`[data-testid=plugin-row][data-plugin="${plugin}"]`);
  await row.waitFor();
  await page.waitForFunction(() => document.querySelector("[data-testid=host]").textContent.length > 0);
  await step("overview", {
    host: await text("[data-testid=host]"),
    acked: await row.locator("[data-testid=acked]").innerText(),
    dlq: await row.locator("[data-testid=dlq-count]").innerText(),
    lag: await row.locator("[data-testid=lag]").innerText(),
    pending: await row.locator("[data-testid=pending]").innerText(),
    failures: await row.locator("[data-testid=failures]").innerText(),
    attention: await row.locator("[data-testid=attention]").allInnerTexts(),
    charts: await row.locator("[data-testid=chart]").count(),
  });
  await shot("overview");

  // Actions without the token: the button is disabled, and a direct POST from
  // the page is refused.
  await page.goto(url + `/#/plugin/${encodeURIComponent(plugin)}`);
  await page.locator("[data-testid=pause]").waitFor();
  const disabled = await page.locator("[data-testid=pause]").isDisabled();
  const refused = await page.evaluate(async (p) => {
    const r = await fetch(`/api/plugins/${encodeURIComponent(p)}/pause`, { method: "POST", body: "{}" });
    return { status: r.status, body: await r.json() };
  }, plugin);
  await step("refused", { disabled, ...refused });

  // Dead letters.
  await page.goto(url + `/#/dlq/${encodeURIComponent(plugin)}`);
  await page.locator("[data-testid=letter]").first().waitFor();
  await step("dlq", {
    letters: await page.locator("[data-testid=letter]").count(),
    reason: await text("[data-testid=letter] [data-testid=reason]"),
    total: await text("[data-testid=total]"),
  });
  await shot("dead-letters");

  // The message page.
  await page.locator("[data-testid=open]").first().click();
  await page.locator("[data-testid=field]").first().waitFor();
  const fields = await page.locator("[data-testid=field]").evaluateAll((rows) =>
    rows.map((r) => ({ kind: r.dataset.kind, name: r.querySelector("td").firstChild.textContent, value: r.querySelector("[data-testid=value]").textContent })));
  await step("message", { fields });
  await shot("message");

  // Sign in with the token.
  await page.goto(url + "/#/");
  await page.locator("[data-testid=login-user]").fill("ops-test");
  await page.locator("[data-testid=login-token]").fill(token);
  await page.locator("[data-testid=login] button").click();
  await page.locator("[data-testid=user]").waitFor();
  await step("signed-in", { user: await text("[data-testid=user]") });

  // Replay the dead letter from the page.
  await page.goto(url + `/#/dlq/${encodeURIComponent(plugin)}`);
  await page.locator("[data-testid=select]").first().check();
  await page.locator("[data-testid=replay-selected]").click();
  await page.waitForFunction(() => /Replayed/.test(document.getElementById("status").textContent));
  await step("replayed", { status: await text("[data-testid=status]") });

  // The plugin page, then pause.
  await page.goto(url + `/#/plugin/${encodeURIComponent(plugin)}`);
  await page.locator("[data-testid=versions]").waitFor();
  await shot("plugin");
  await page.locator("[data-testid=pause]").click();
  await page.locator("[data-testid=paused]").waitFor();
  await step("paused", { status: await text("[data-testid=paused]") });
  await shot("plugin-paused");

  await page.locator("[data-testid=resume]").click();
  await page.locator("[data-testid=running]").waitFor();
  await step("resumed", {});

  await page.goto(url + "/#/");
  await row.waitFor();
  await step("final", { acked: await row.locator("[data-testid=acked]").innerText() });
} catch (e) {
  failed = true;
  process.stderr.write(`dashboard driver failed: ${e.stack || e}\n`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
