fetch('/identity').then(r => r.json()).then(j => {
  document.getElementById('fp').textContent = j.fingerprint;
}).catch(() => {});
