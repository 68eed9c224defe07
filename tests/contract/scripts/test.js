// Collection test script (portman-config.yaml, globals), run after every request besides the
// tests Portman generated for it.
const status = pm.response.code;
pm.test('no 5xx other than a documented 503', function () {
  pm.expect(status < 500 || status === 503, `status ${status}`).to.equal(true);
});
// Behind Prism's validating proxy (contract.test.mjs), the answer must be the gateway's, not one
// Prism made (a request Prism refused, a route it does not know), and Prism must have found no
// violation in it: it lists them in the sl-violations header (and answers 500 with --errors).
let type = '';
try {
  type = String(pm.response.json().type || '');
} catch (e) {
  type = '';
}
pm.test('the answer is the gateway\'s, not Prism\'s', function () {
  pm.expect(type.startsWith('https://stoplight.io/prism/'), type).to.equal(false);
});
const violations = pm.response.headers.get('sl-violations');
if (violations) {
  let listed = [];
  try {
    listed = JSON.parse(violations.replace(/^Too many violations! /, ''));
  } catch (e) {
    listed = [{ location: ['response'], message: `unreadable sl-violations: ${violations.slice(0, 200)}` }];
  }
  const inResponse = listed
    .filter((v) => Array.isArray(v.location) && v.location[0] === 'response')
    .map((v) => `${v.location.join('.')}: ${v.message}`);
  pm.test('Prism: the answer conforms to docs/openapi.yaml', function () {
    pm.expect(inResponse).to.eql([]);
  });
}
