// End to end in headless Chromium: two demo pages chat through a live
// ringpushd; one page goes offline (network emulation: the page sees
// `offline`), the other sends, the first comes back and shows every message
// in order. Also unread counts, read receipts and a recall. Set
// RP_DEMO_SCREENSHOT=path to save a screenshot of the page at the end.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

import { chromium } from "playwright-core";

import { startDemo } from "../../demo/server.mjs";
import { haveServer, login, SECRET, Server, sleep } from "../helpers.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const skip = !haveServer() ? "ringpushd binary not found (set RINGPUSHD)"
  : !fs.existsSync(CHROMIUM) ? `${CHROMIUM} not found (apt-get install chromium)` : false;

async function bodies(page) {
  return page.$$eval("#messages .msg .body", (els) => els.map((e) => e.textContent));
}

async function waitBodies(page, want, what) {
  try {
    await page.waitForFunction(
      (w) => JSON.stringify([...document.querySelectorAll("#messages .msg .body")].map((e) => e.textContent)) === JSON.stringify(w),
      want,
      { timeout: 10000 },
    );
  } catch {
    assert.deepEqual(await bodies(page), want, what);
  }
}

async function setOffline(cdp, offline) {
  await cdp.send("Network.emulateNetworkConditions", { offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
}

test("two pages chat; the one that was offline gets every message in order", { skip, timeout: 120000 }, async () => {
  const srv = await new Server({ shards: 2 }).start();
  const demo = await startDemo({ port: 0, secret: SECRET, wsUrl: srv.url });
  const base = `http://127.0.0.1:${demo.address().port}`;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "rpjs-chromium-"));
  let ctx;
  let cai;
  try {
    ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 960, height: 640 } });
    const pageErrors = [];
    const ana = await ctx.newPage();
    const ben = await ctx.newPage();
    for (const p of [ana, ben]) p.on("pageerror", (e) => pageErrors.push(String(e)));
    await ana.goto(`${base}/?user=e_ana&peer=e_ben`);
    await ben.goto(`${base}/?user=e_ben&peer=e_ana`);
    await ana.waitForSelector("body[data-ready]", { timeout: 15000 });
    await ben.waitForSelector("body[data-ready]", { timeout: 15000 });
    assert.equal(await ana.textContent("#state"), "open");

    // A conversation both ways.
    await ana.fill("#text", "hi ben");
    await ana.press("#text", "Enter");
    await waitBodies(ben, ["hi ben"], "ben sees ana's message");
    await ben.fill("#text", "hi ana");
    await ben.click("#send");
    await waitBodies(ana, ["hi ben", "hi ana"], "ana sees the reply");

    // Read receipt: ben had the conversation open, so ana's message shows Read.
    await ana.waitForSelector(".msg.mine .status.read", { timeout: 10000 });

    // Ana goes offline; ben sends five; ana comes back and shows them all, in order.
    const cdp = await ctx.newCDPSession(ana);
    await cdp.send("Network.enable");
    await setOffline(cdp, true);
    await ana.waitForFunction(() => document.querySelector("#state").textContent === "offline", null, { timeout: 10000 });
    const away = [1, 2, 3, 4, 5].map((i) => `while away ${i}`);
    for (const t of away) {
      await ben.fill("#text", t);
      await ben.press("#text", "Enter");
    }
    await ben.waitForFunction((n) => document.querySelectorAll("#messages .msg.mine[data-seq]").length === n, 6, { timeout: 10000 });
    await sleep(300);
    assert.deepEqual(await bodies(ana), ["hi ben", "hi ana"], "nothing reaches an offline page");
    await setOffline(cdp, false);
    await waitBodies(ana, ["hi ben", "hi ana", ...away], "ana shows every message in order after coming back");
    const seqs = await ana.$$eval("#messages .msg", (els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7]);

    // A third user (a Node.js client) writes to ana: an unread badge on that conversation.
    cai = await login(srv, "e_cai");
    await cai.send({ to: "e_ana", body: "ana, are you there?" });
    await cai.send({ to: "e_ana", body: "ping me" });
    await ana.waitForFunction(() => document.querySelector('#convs li[data-conv="d:e_ana:e_cai"] .badge')?.textContent === "2", null, { timeout: 10000 });

    // Ben recalls a message: ana's page shows it as recalled.
    await ben.click('#messages .msg.mine[data-seq="7"] button.recall');
    await ana.waitForSelector('#messages .msg.recalled[data-seq="7"]', { timeout: 10000 });
    assert.equal(await ana.textContent('#messages .msg[data-seq="7"] .body'), "message recalled");
    await ana.waitForSelector("#messages .system", { timeout: 5000 });

    // One more line from ana so the screenshot shows a read receipt and a fresh message.
    await ana.fill("#text", "all caught up, thanks!");
    await ana.press("#text", "Enter");
    await ana.waitForFunction(() => [...document.querySelectorAll(".msg.mine .status.read")].length >= 2, null, { timeout: 10000 });
    if (process.env.RP_DEMO_SCREENSHOT) await ana.screenshot({ path: process.env.RP_DEMO_SCREENSHOT });
    assert.deepEqual(pageErrors, []);
  } finally {
    cai?.close();
    await ctx?.close();
    await new Promise((r) => demo.close(r));
    fs.rmSync(profile, { recursive: true, force: true });
    await srv.dispose();
  }
});
