// The page's behaviour: fill the model line, run searches and scores through the JSON API.
'use strict';

const $ = (id) => document.getElementById(id);
const fmt = (x) => (x === null || x === undefined ? '-' : x.toFixed(4));

async function apiError(response) {
  try {
    const body = await response.json();
    return typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail);
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

function showStatus(element, text, isError) {
  element.textContent = text;
  element.classList.toggle('error', Boolean(isError));
}

async function loadInfo() {
  const response = await fetch('/api/info');
  if (!response.ok) { showStatus($('model-info'), await apiError(response), true); return; }
  const info = await response.json();
  $('model-info').textContent = `${info.model}: ${info.gallery_size} gallery images, ` +
    `${info.embed_dim}-d embeddings, ${info.image_size} px input` +
    (info.can_rerank ? ', cross-encoder re-ranking' : ', no cross encoders (embedding search only)');
  if (!info.can_rerank) { $('rerank-k').value = 0; $('rerank-k').disabled = true; }
  document.body.dataset.ready = 'true';
}

function renderResult(hit) {
  const item = document.createElement('li');
  item.className = 'result' + (hit.rerank_score === null ? '' : ' reranked');
  Object.assign(item.dataset, { rank: hit.rank, index: hit.index, name: hit.name, score: hit.score,
                                embeddingScore: hit.embedding_score, rerankScore: hit.rerank_score ?? '' });
  const image = document.createElement('img');
  image.src = hit.url;
  image.alt = hit.name;
  const lines = [
    ['rank', `#${hit.rank}`],
    ['name', hit.name],
    ['score', `score ${fmt(hit.score)}`],
    ['similarity', `cosine ${fmt(hit.embedding_score)}`],
    ['probability', `match ${fmt(hit.rerank_score)}`],
  ];
  item.appendChild(image);
  for (const [cls, text] of lines) {
    const line = document.createElement('div');
    line.className = cls;
    line.textContent = text;
    item.appendChild(line);
  }
  return item;
}

async function search(event) {
  event.preventDefault();
  const params = new URLSearchParams({ q: $('query').value, top_k: $('top-k').value,
                                       rerank_k: $('rerank-k').value || 0 });
  const status = $('search-status');
  showStatus(status, 'searching ...');
  $('results').replaceChildren();
  const started = performance.now();
  const response = await fetch(`/api/search?${params}`);
  if (!response.ok) { showStatus(status, await apiError(response), true); return; }
  const body = await response.json();
  $('results').replaceChildren(...body.results.map(renderResult));
  const reranked = body.results.filter((hit) => hit.rerank_score !== null).length;
  showStatus(status, `${body.results.length} results for “${body.query}”` +
    (reranked ? `, top ${reranked} re-ranked` : '') +
    ` (${Math.round(performance.now() - started)} ms)`);
  status.dataset.done = String(Date.now());
}

function preview() {
  const file = $('score-image').files[0];
  $('score-preview').replaceChildren();
  if (!file) return;
  const image = document.createElement('img');
  image.src = URL.createObjectURL(file);
  $('score-preview').appendChild(image);
}

async function score(event) {
  event.preventDefault();
  const result = $('score-result');
  const file = $('score-image').files[0];
  if (!file) { showStatus(result, 'choose an image first', true); return; }
  const form = new FormData();
  form.append('image', file);
  form.append('text', $('score-text').value);
  showStatus(result, 'scoring ...');
  const response = await fetch('/api/score', { method: 'POST', body: form });
  if (!response.ok) { showStatus(result, await apiError(response), true); return; }
  const body = await response.json();
  result.replaceChildren();
  result.classList.remove('error');
  const value = document.createElement('span');
  value.className = 'value';
  value.id = 'score-probability';
  value.textContent = body.probability === null ? 'n/a' : fmt(body.probability);
  result.append('matching probability ', value, `  (cosine similarity ${fmt(body.similarity)})`);
  Object.assign(result.dataset, { probability: body.probability ?? '', similarity: body.similarity,
                                  done: String(Date.now()) });
}

$('search-form').addEventListener('submit', search);
$('score-form').addEventListener('submit', score);
$('score-image').addEventListener('change', preview);
loadInfo();
