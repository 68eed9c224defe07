// Collection pre-request script (portman-config.yaml, globals): every request gets a user id of
// its own in {{freshUser}}, the run's {{userId}} and a counter, for the requests that must not
// depend on another's cart.
const count = Number(pm.collectionVariables.get('requestCount') || 0) + 1;
pm.collectionVariables.set('requestCount', count);
pm.variables.set('freshUser', `${pm.variables.get('userId')}.${count}`);

// Prism 5.14 cannot forward the answer to a HEAD whose Content-Type is JSON (the cart's, /readyz's):
// it parses the empty body as JSON and answers 500. In the run through Prism, contract.test.mjs
// names in headBypass the gateway behind each Prism, and such a HEAD goes straight there
// (README.md, the tools' limits). /healthz and /metrics are text/plain: their HEAD goes through.
const bypass = pm.variables.get('headBypass');
if (bypass && pm.request.method === 'HEAD') {
  let url = pm.request.url.toString();
  pm.request.url.variables.each((v) => {
    url = url.replace(`:${v.key}`, v.value);
  });
  url = pm.variables.replaceIn(url);
  for (const [prism, upstream] of Object.entries(JSON.parse(bypass))) {
    if (url.startsWith(`${prism}/`) && !/^\/(healthz|metrics)$/.test(url.slice(prism.length))) {
      pm.request.url = upstream + url.slice(prism.length);
    }
  }
}
