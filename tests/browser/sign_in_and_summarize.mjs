// Signs in and summarizes a text in headless Chromium, as a person would: opens the summarize
// form before signing in, types a text, submits, signs in at the OpenID provider's login form,
// and expects the summary of the typed text after the sign-in. Saves a screenshot.
//
// Usage: node sign_in_and_summarize.mjs --app URL --login NAME --expect TEXT --screenshot PATH
// Exits 0 when the summary shows, 1 otherwise. Chromium comes from CHROMIUM (default
// /usr/bin/chromium); nothing is downloaded.

import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    app: { type: 'string' },
    login: { type: 'string', default: 'browser-user' },
    text: { type: 'string', default: '東京の天気は晴れ、午後から雨の予報です。傘を忘れずに持って行きましょう。' },
    expect: { type: 'string' },
    screenshot: { type: 'string' },
  },
});
for (const name of ['app', 'expect', 'screenshot']) {
  if (!args[name]) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The closed network refuses Chromium's background connections, so they are turned off.
  // Playwright starts every launch with a new, empty profile.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

let status = 1;
try {
  const page = await browser.newPage({ locale: 'ja-JP', extraHTTPHeaders: { 'accept-language': 'ja' } });
  page.setDefaultTimeout(15000);

  await page.goto(`${args.app}/summarize`);
  await page.fill('#text', args.text);
  await page.click('button[type=submit]');

  // The provider's login form.
  await page.waitForSelector('input[name=login]');
  await page.fill('input[name=login]', args.login);
  const password = await page.$('input[name=password]');
  if (password) await password.fill('any-password');
  await page.click('button[type=submit]');

  await page.waitForSelector('#result');
  const result = await page.textContent('#result');
  await page.screenshot({ path: args.screenshot, fullPage: true });
  if (result.includes(args.expect)) {
    status = 0;
  } else {
    console.error(`the summary ${JSON.stringify(result)} does not contain ${JSON.stringify(args.expect)}`);
  }
} catch (error) {
  console.error(`browser test failed: ${error.message}`);
} finally {
  await browser.close();
}
process.exit(status);
