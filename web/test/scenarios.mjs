// The browser scenarios. Each takes the context of run.mjs and throws on failure.
import { check, loadVectors } from './golden.mjs';

export const scenarios = {
  async golden(ctx) {
    const page = await ctx.browser.newPage();
    await page.goto(ctx.base + '/');
    const r = await page.evaluate(check, loadVectors(ctx.root));
    await page.close();
    if (r.bad.length) throw new Error(`${r.bad.length} of ${r.checks} golden checks failed:\n  ` + r.bad.join('\n  '));
    if (r.checks < 180) throw new Error(`only ${r.checks} golden checks ran`);
  },
};
