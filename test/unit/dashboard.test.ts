import { describe, expect, it } from 'vitest';
import { dashboardHtml, jsonForScript } from '../../src/observe/dashboard.js';
import type { Summary } from '../../src/observe/summary.js';

describe('the summary embedded in the dashboard', () => {
  it('cannot end its script element or open a comment, and parses back to the same value', () => {
    const hostile = { name: '</script><script>alert(1)</script><!-- & \u2028' };
    const text = jsonForScript(hostile);
    expect(text).not.toMatch(/[<>&\u2028]/);
    expect(JSON.parse(text)).toEqual(hostile);
  });

  it('is the one script data block of the page', () => {
    const page = dashboardHtml({
      topRepositories: [{ repository: '</script>x', requests: 1, bytes: 2 }],
    } as unknown as Summary);
    const blocks = page.match(/<script type="application\/json" id="initial-summary">[^<]*<\/script>/g);
    expect(blocks).toHaveLength(1);
    expect(page.split('</script>')).toHaveLength(3);
  });
});
