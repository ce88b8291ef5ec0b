document.querySelector("#app").textContent = `node-vite-spa, built at ${new Date().toISOString()}`;
