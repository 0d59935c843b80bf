// The union360 audience dashboard: reads `audience` and `audienceHistory`
// from this server's /graphql with the API key the user pasted (kept in this
// browser's local storage only, or taken from the GraphiQL playground's
// saved headers) and draws them with Apache ECharts, served by the same
// server. It asks once on load and when the user presses Refresh or gives a
// key, and, while the key also holds the `read` scope, again a moment after
// the server tells it (over the `accountEvents` subscription, on
// /graphql/ws) that follows changed; it never polls.
(function () {
  'use strict';

  /** Where the key is kept, in this browser only. */
  var KEY_STORAGE = 'union360:dashboard:key';
  /** Where the GraphiQL playground keeps its headers (a JSON object). */
  var PLAYGROUND_HEADERS = 'graphiql:headers';
  var HISTORY_DAYS = 30;
  /** The UpSet chart shows at most this many combinations, largest first. */
  var MAX_COMBINATIONS = 40;
  var REQUEST_TIMEOUT_MS = 30000;
  var CREATE_KEY = 'union360 apikey create --name dashboard --scopes stats,read';
  /** What the live connection watches: anything that moves the numbers. */
  var LIVE_QUERY = 'subscription DashboardLive { accountEvents(kinds: [FOLLOWED, UNFOLLOWED, LINKED]) { kind } }';
  /** A reload waits for events to pause this long... */
  var LIVE_SETTLE_MS = 1000;
  /** ...but no longer than this after the first of them. */
  var LIVE_MAX_WAIT_MS = 5000;
  /** A connection up this long has recovered: retries start short again. */
  var LIVE_STABLE_MS = 30000;
  /** Waits before connecting again after a lost connection, doubled up to the last. */
  var LIVE_RETRY_MS = [1000, 2000, 5000, 10000, 30000];
  /** Close codes after which connecting again would not help. */
  var LIVE_FINAL_CODES = [4400, 4401, 4403, 4409, 4429];

  var QUERY = [
    'query Dashboard($from: Date!, $to: Date!) {',
    '  audience {',
    '    apps { appid name followers linkedFollowers unlinkedFollowers }',
    '    distinctPeople { atLeast atMost }',
    '    linkedPeople',
    '    unlinkedFollowers',
    '    pairs { appids people }',
    '    followCounts { apps people }',
    '    combinations { appids people }',
    '  }',
    '  audienceHistory(from: $from, to: $to) {',
    '    day',
    '    apps { appid name followers }',
    '    distinctPeople { atLeast atMost }',
    '  }',
    '}'
  ].join('\n');

  var COLORS = {
    ink: '#1b2a41',
    linked: '#2f6fdf',
    unlinked: '#b8c4d3',
    empty: '#e3e8ee',
    muted: '#5d6b7e',
    heatLow: '#f1f5fc',
    heatHigh: '#2f6fdf'
  };
  /** One colour per account in the trend, in registration order. */
  var APP_COLORS = ['#2f6fdf', '#e07b39', '#2a9d8f', '#c44e8a', '#8a6fd1', '#b5a22c',
    '#4f9bd9', '#d1495b', '#5c946e', '#9c6644', '#3d5a80', '#ef8354'];

  var $ = function (id) { return document.getElementById(id); };
  var form = $('key-form');
  var keyInput = $('key');
  var keyNote = $('key-note');
  var forgetButton = $('forget');
  var refreshButton = $('refresh');
  var updated = $('updated');
  var liveNote = $('live');
  var statusBox = $('status');
  var content = $('content');
  var chartsBox = $('charts');
  var number = new Intl.NumberFormat();
  var charts = {};
  /** The last answer drawn, redrawn when the window's size changes. */
  var lastAnswer = null;
  /** Off while redrawing for a new window size, which is no news. */
  var animate = true;
  var key = '';
  var loading = false;
  var again = false;

  // ---- the key -------------------------------------------------------

  function storage() {
    try {
      return window.localStorage;
    } catch (e) {
      return null; // storage disabled: the key lasts until the page closes
    }
  }

  function stored(name) {
    var s = storage();
    try {
      return s ? s.getItem(name) : null;
    } catch (e) {
      return null;
    }
  }

  function store(name, value) {
    var s = storage();
    try {
      if (s && value) s.setItem(name, value);
      else if (s) s.removeItem(name);
    } catch (e) {
      // A full or disabled storage only costs pasting the key again.
    }
  }

  /** The key from an `Authorization: Bearer <key>` value, or from the bare key. */
  function keyFrom(text) {
    var match = /^\s*(?:Bearer\s+)?(\S+)\s*$/i.exec(text || '');
    return match && match[1].charAt(0) !== '<' ? match[1] : '';
  }

  /** The key the playground keeps in its Headers tab, if any. */
  function playgroundKey() {
    var headers;
    try {
      headers = JSON.parse(stored(PLAYGROUND_HEADERS) || '{}');
    } catch (e) {
      return '';
    }
    if (!headers || typeof headers !== 'object' || Array.isArray(headers)) return '';
    var names = Object.keys(headers);
    for (var i = 0; i < names.length; i++) {
      if (names[i].toLowerCase() === 'authorization' && typeof headers[names[i]] === 'string') {
        return keyFrom(headers[names[i]]);
      }
    }
    return '';
  }

  function useKey(newKey, note) {
    key = newKey;
    keyInput.value = newKey;
    keyNote.textContent = note;
  }

  // ---- talking to /graphql ---------------------------------------------

  /** A day in China Standard Time (UTC+8), `days` before today. */
  function chinaDay(days) {
    return new Date(Date.now() + 8 * 3600e3 - days * 86400e3).toISOString().slice(0, 10);
  }

  function codesOf(errors) {
    return errors.map(function (e) { return e && e.extensions && e.extensions.code; });
  }

  /** Resolves to {data} or {problem: {title, detail, todo, list}}. */
  function fetchAudience() {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    return fetch('/graphql', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/graphql-response+json, application/json',
        Authorization: 'Bearer ' + key
      },
      body: JSON.stringify({
        query: QUERY,
        operationName: 'Dashboard',
        variables: { from: chinaDay(HISTORY_DAYS - 1), to: chinaDay(0) }
      }),
      cache: 'no-store',
      credentials: 'omit',
      signal: controller.signal
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try {
          body = JSON.parse(text);
        } catch (e) {
          // Not GraphQL: described below from the status.
        }
        return interpret(response.status, body);
      });
    }, function (err) {
      if (controller.signal.aborted) {
        return { problem: {
          title: 'union360 did not answer within ' + REQUEST_TIMEOUT_MS / 1000 + ' seconds.',
          todo: 'The server may be overloaded. Press Refresh to try again.'
        } };
      }
      return { problem: {
        title: 'Could not reach the union360 server.',
        detail: 'The browser said: ' + String(err && err.message || err),
        todo: 'Check that the server is running and reachable from this browser, then press Refresh.'
      } };
    }).finally(function () {
      clearTimeout(timer);
    });
  }

  function interpret(status, body) {
    var errors = body && Array.isArray(body.errors) ? body.errors : [];
    var codes = codesOf(errors);
    var first = errors.length && errors[0] && errors[0].message
      ? 'The server said: ' + String(errors[0].message)
      : '';
    if (status === 401 || codes.indexOf('UNAUTHENTICATED') >= 0) {
      return { problem: {
        keyRefused: true,
        title: 'The server refused the API key (401).',
        detail: first,
        todo: 'Paste a valid key above and press Use key. An operator creates one with:',
        command: CREATE_KEY
      } };
    }
    if (status === 403 || codes.indexOf('FORBIDDEN') >= 0) {
      return { problem: {
        keyRefused: true,
        title: 'This API key may not read the audience statistics: it lacks the stats scope.',
        detail: first,
        todo: 'Paste a key with the stats scope above. An operator creates one with:',
        command: CREATE_KEY
      } };
    }
    if (status === 429 || codes.indexOf('RATE_LIMITED') >= 0) {
      return { problem: {
        title: 'Too many requests with this key right now.',
        detail: first,
        todo: 'Wait a moment, then press Refresh.'
      } };
    }
    if (body && body.data && body.data.audience && body.data.audienceHistory && !errors.length) {
      return { data: body.data };
    }
    if (codes.indexOf('GRAPHQL_VALIDATION_FAILED') >= 0) {
      return { problem: {
        title: 'This server does not offer the audience statistics the dashboard reads.',
        list: describeAll(errors),
        todo: 'Upgrade union360 to a version with the audience API.'
      } };
    }
    if (errors.length) {
      return { problem: {
        title: 'The server answered with ' + (errors.length === 1 ? 'an error' : errors.length + ' errors') + '.',
        list: describeAll(errors),
        todo: 'Press Refresh to try again; if it persists, the server log says more.'
      } };
    }
    return { problem: {
      title: 'Unexpected answer from the server (HTTP ' + status + ').',
      todo: 'Press Refresh to try again; if it persists, the server log says more.'
    } };
  }

  /** Each error's message and code, said once however often it was reported. */
  function describeAll(errors) {
    var seen = {};
    return errors.map(function (error) {
      var code = error && error.extensions && error.extensions.code;
      return String(error && error.message || 'error') + (code ? ' (' + code + ')' : '');
    }).filter(function (text) {
      if (seen[text]) return false;
      seen[text] = true;
      return true;
    });
  }

  // ---- the page ------------------------------------------------------

  function showStatus(kind, problem) {
    statusBox.replaceChildren();
    statusBox.className = 'status' + (kind === 'error' ? ' error' : '');
    var title = document.createElement('strong');
    title.textContent = problem.title;
    statusBox.append(title);
    if (problem.detail) addLine(statusBox, problem.detail);
    if (problem.list && problem.list.length) {
      var list = document.createElement('ul');
      problem.list.forEach(function (text) {
        var item = document.createElement('li');
        item.textContent = text;
        list.append(item);
      });
      statusBox.append(list);
    }
    if (problem.todo) {
      var todo = addLine(statusBox, problem.todo);
      if (problem.command) {
        var command = document.createElement('code');
        command.textContent = problem.command;
        todo.append(' ', command);
      }
    }
    statusBox.dataset.kind = kind;
    statusBox.hidden = false;
  }

  function addLine(parent, text) {
    var p = document.createElement('p');
    p.textContent = text;
    parent.append(p);
    return p;
  }

  function clearStatus() {
    statusBox.hidden = true;
    statusBox.replaceChildren();
    delete statusBox.dataset.kind;
  }

  function askForKey() {
    showStatus('info', {
      title: 'Paste an API key with the stats scope above, then press Use key.',
      todo: 'It stays in this browser (local storage) and is sent only to this server. ' +
        'An operator creates one with:',
      command: CREATE_KEY
    });
  }

  /** Asks the API and draws the answer; one request at a time. */
  function load() {
    if (loading) {
      // A key given meanwhile: ask again with it once this answer is in.
      again = true;
      return;
    }
    if (!key) {
      askForKey();
      return;
    }
    loading = true;
    var askedWith = key;
    refreshButton.disabled = true;
    refreshButton.textContent = 'Loading…';
    fetchAudience().then(function (result) {
      if (askedWith !== key) return; // the key changed meanwhile
      if (result.problem) {
        // What another key showed must not stay on screen under a refused one.
        if (result.problem.keyRefused) hideCharts();
        showStatus('error', result.problem);
        return;
      }
      clearStatus();
      lastAnswer = result.data;
      render(lastAnswer.audience, lastAnswer.audienceHistory);
      updated.textContent = 'Updated ' + new Date().toLocaleTimeString();
      if ((!live || live.key !== key) && liveRefused !== key) goLive();
    }).catch(function (err) {
      showStatus('error', {
        title: 'The dashboard could not draw this answer.',
        detail: 'The browser said: ' + String(err && err.message || err),
        todo: 'Press Refresh to try again.'
      });
    }).finally(function () {
      loading = false;
      refreshButton.disabled = false;
      refreshButton.textContent = 'Refresh';
      if (again) {
        again = false;
        load();
      }
    });
  }

  // ---- live updates ----------------------------------------------------

  /** The live connection: its socket and the key it was opened with. */
  var live = null;
  /** A key the server would not let watch (it lacks the read scope). */
  var liveRefused = '';
  var liveRetries = 0;
  var liveReload = null;
  var liveFirstEvent = 0;

  function setLive(state, text) {
    liveNote.dataset.state = state;
    liveNote.textContent = text;
    liveNote.title = state === 'off'
      ? 'Press Refresh to update the figures.'
      : 'The figures update by themselves when follows change.';
  }

  function stopLive() {
    if (live) {
      var socket = live.socket;
      clearTimeout(live.stable);
      live = null;
      socket.close(1000);
    }
    clearTimeout(liveReload);
    liveReload = null;
    setLive('off', '');
  }

  /** Ends the live connection `mine` for good (until the next load), saying why. */
  function endLive(mine, text) {
    mine.final = true;
    if (live !== mine) return;
    clearTimeout(mine.stable);
    live = null;
    mine.socket.close(1000);
    setLive('off', text);
  }

  /** Reloads once events pause, or at the latest a few seconds after the first. */
  function reloadSoon() {
    var now = Date.now();
    if (!liveReload) liveFirstEvent = now;
    clearTimeout(liveReload);
    var wait = Math.max(0, Math.min(LIVE_SETTLE_MS, liveFirstEvent + LIVE_MAX_WAIT_MS - now));
    liveReload = setTimeout(function () {
      liveReload = null;
      load();
    }, wait);
  }

  /** Opens the subscription with the current key (`graphql-transport-ws`). */
  function goLive() {
    stopLive();
    if (!key || typeof WebSocket === 'undefined') return;
    var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    var socket = new WebSocket(scheme + '//' + window.location.host + '/graphql/ws', 'graphql-transport-ws');
    var mine = { socket: socket, key: key, final: false, stable: null };
    live = mine;
    setLive('connecting', 'Connecting live updates…');
    var send = function (message) { socket.send(JSON.stringify(message)); };
    socket.addEventListener('open', function () {
      send({ type: 'connection_init', payload: { Authorization: 'Bearer ' + mine.key } });
    });
    socket.addEventListener('message', function (event) {
      if (live !== mine) return;
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (message.type === 'connection_ack') {
        send({ id: 'live', type: 'subscribe', payload: { query: LIVE_QUERY } });
        mine.stable = setTimeout(function () { liveRetries = 0; }, LIVE_STABLE_MS);
        setLive('on', '● Live');
      } else if (message.type === 'ping') {
        send({ type: 'pong' });
      } else if (message.type === 'next') {
        var payload = message.payload || {};
        if (payload.errors && !payload.data) {
          var forbidden = codesOf(payload.errors).indexOf('FORBIDDEN') >= 0;
          if (forbidden) liveRefused = mine.key;
          endLive(mine, forbidden
            ? 'Live updates need the read scope too: press Refresh to update.'
            : 'Live updates stopped: press Refresh to update.');
          return;
        }
        reloadSoon();
      } else if (message.type === 'error' || message.type === 'complete') {
        endLive(mine, 'Live updates stopped: press Refresh to update.');
      }
    });
    socket.addEventListener('close', function (event) {
      if (live !== mine) return;
      clearTimeout(mine.stable);
      live = null;
      if (mine.final || LIVE_FINAL_CODES.indexOf(event.code) >= 0) {
        if (liveNote.dataset.state !== 'off') setLive('off', 'Live updates off: press Refresh to update.');
        return;
      }
      // Lost (a restart, or too slow to keep up): catch up, then watch again.
      var wait = LIVE_RETRY_MS[Math.min(liveRetries, LIVE_RETRY_MS.length - 1)];
      liveRetries += 1;
      setLive('connecting', 'Live updates interrupted; reconnecting…');
      setTimeout(function () {
        if (live === null && mine.key === key) {
          load();
          goLive();
        }
      }, wait);
    });
  }

  function hideCharts() {
    stopLive();
    content.hidden = true;
    lastAnswer = null;
    disposeCharts();
    updated.textContent = '';
  }

  // ---- charts --------------------------------------------------------

  /** Display labels, made unique by the appid where two names are alike. */
  function labels(apps) {
    var seen = {};
    apps.forEach(function (a) { seen[a.name] = (seen[a.name] || 0) + 1; });
    return apps.map(function (a) { return seen[a.name] > 1 ? a.name + ' (' + a.appid + ')' : a.name; });
  }

  /** Text for ECharts' rich text, where braces and bars are markup. */
  function plain(text) {
    return String(text).replace(/[{}|]/g, ' ');
  }

  function chart(id, height) {
    var el = $(id);
    el.style.height = height + 'px';
    if (!charts[id]) charts[id] = echarts.init(el, null, { renderer: 'canvas' });
    else charts[id].resize();
    return charts[id];
  }

  function disposeCharts() {
    Object.keys(charts).forEach(function (id) { charts[id].dispose(); });
    charts = {};
  }

  /** Tooltips drawn on the canvas: no HTML, so nothing to escape or style inline. */
  function tooltip(extra) {
    return Object.assign({ renderMode: 'richText', confine: true }, extra);
  }

  function render(audience, history) {
    content.hidden = false;
    var apps = audience.apps;
    var names = labels(apps);
    renderNumbers(audience);
    chartsBox.hidden = apps.length === 0;
    if (apps.length === 0) {
      disposeCharts();
      showStatus('info', {
        title: 'No official accounts are registered yet.',
        todo: 'Register one (`union360 app add`, or registerApp with kind OFFICIAL_ACCOUNT) ' +
          'and its followers will show here.'
      });
      return;
    }
    renderFollowers(apps, names);
    renderOverlap(audience, names);
    renderCombinations(audience, names);
    renderTrend(history);
  }

  function setFigure(id, value) {
    var out = $(id);
    out.value = number.format(value);
    out.dataset.value = String(value);
  }

  function renderNumbers(a) {
    setFigure('n-at-least', a.distinctPeople.atLeast);
    setFigure('n-at-most', a.distinctPeople.atMost);
    setFigure('n-linked', a.linkedPeople);
    setFigure('n-unlinked', a.unlinkedFollowers);
    var parts = a.followCounts.filter(function (c) { return c.people > 0; }).map(function (c) {
      return number.format(c.people) + ' follow ' + (c.apps === 1 ? '1 account' : c.apps + ' accounts');
    });
    $('follow-counts').textContent = parts.length ? 'Of the linked people: ' + parts.join(' · ') + '.' : '';
  }

  function renderFollowers(apps, names) {
    var c = chart('chart-followers', 90 + apps.length * 34);
    c.setOption({
      aria: { enabled: true },
      animation: animate,
      color: [COLORS.linked, COLORS.unlinked],
      tooltip: tooltip({ trigger: 'axis', axisPointer: { type: 'shadow' } }),
      legend: { top: 0, left: 0 },
      grid: { left: 8, right: 48, top: 32, bottom: 24 },
      xAxis: { type: 'value', minInterval: 1 },
      yAxis: {
        type: 'category',
        inverse: true,
        data: names.map(plain),
        axisLabel: { width: 150, overflow: 'truncate' }
      },
      series: [
        {
          name: 'Linked',
          type: 'bar',
          stack: 'followers',
          barMaxWidth: 22,
          data: apps.map(function (a) { return a.linkedFollowers; })
        },
        {
          name: 'Unlinked',
          type: 'bar',
          stack: 'followers',
          barMaxWidth: 22,
          data: apps.map(function (a) { return a.unlinkedFollowers; }),
          label: {
            show: true,
            position: 'right',
            color: COLORS.ink,
            formatter: function (p) { return number.format(apps[p.dataIndex].followers); }
          }
        }
      ]
    }, true);
  }

  function renderOverlap(audience, names) {
    var apps = audience.apps;
    var index = {};
    apps.forEach(function (a, i) { index[a.appid] = i; });
    var cells = [];
    var max = 0;
    audience.pairs.forEach(function (pair) {
      var i = index[pair.appids[0]];
      var j = index[pair.appids[1]];
      if (i === undefined || j === undefined) return;
      cells.push([i, j, pair.people], [j, i, pair.people]);
      max = Math.max(max, pair.people);
    });
    var diagonal = apps.map(function (a, i) { return [i, i, a.linkedFollowers]; });
    var size = Math.min(520, 110 + apps.length * 46);
    var c = chart('chart-overlap', size);
    var rotate = apps.length > 3 ? 30 : 0;
    c.setOption({
      aria: { enabled: true },
      animation: animate,
      tooltip: tooltip({
        formatter: function (p) {
          var x = p.value[0];
          var y = p.value[1];
          if (x === y) return plain(names[x]) + '\n' + number.format(p.value[2]) + ' linked followers';
          return plain(names[y]) + ' and ' + plain(names[x]) + '\n' + number.format(p.value[2]) + ' people follow both';
        }
      }),
      grid: { left: 8, right: 84, top: 8, bottom: rotate ? 56 : 28 },
      xAxis: {
        type: 'category',
        data: names.map(plain),
        splitArea: { show: true },
        axisLabel: { interval: 0, rotate: rotate, width: 110, overflow: 'truncate' }
      },
      yAxis: {
        type: 'category',
        inverse: true,
        data: names.map(plain),
        splitArea: { show: true },
        axisLabel: { width: 130, overflow: 'truncate' }
      },
      visualMap: {
        type: 'continuous',
        seriesIndex: 0,
        min: 0,
        max: Math.max(1, max),
        calculable: false,
        orient: 'vertical',
        right: 0,
        top: 'middle',
        itemHeight: Math.min(140, size - 80),
        text: ['more', 'fewer'],
        inRange: { color: [COLORS.heatLow, COLORS.heatHigh] }
      },
      series: [
        {
          name: 'People following both',
          type: 'heatmap',
          data: cells,
          label: {
            show: apps.length <= 10,
            fontSize: apps.length > 6 ? 10 : 12,
            formatter: function (p) { return number.format(p.value[2]); }
          },
          itemStyle: { borderColor: '#fff', borderWidth: 2 }
        },
        {
          name: 'Linked followers',
          type: 'heatmap',
          data: diagonal,
          label: {
            show: apps.length <= 10,
            fontSize: apps.length > 6 ? 10 : 12,
            color: '#fff',
            formatter: function (p) { return number.format(p.value[2]); }
          },
          itemStyle: { color: COLORS.ink, borderColor: '#fff', borderWidth: 2 }
        }
      ]
    }, true);
  }

  /**
   * An UpSet chart: a bar per combination (exact set of accounts followed),
   * a dot matrix below it marking the accounts of each, and the accounts'
   * linked followers as bars on the left.
   */
  function renderCombinations(audience, names) {
    var apps = audience.apps;
    var index = {};
    apps.forEach(function (a, i) { index[a.appid] = i; });
    var all = audience.combinations;
    var shown = all.slice(0, MAX_COMBINATIONS);
    $('combinations-note').textContent = all.length > shown.length
      ? 'Showing the ' + shown.length + ' largest of ' + number.format(all.length) + ' combinations.'
      : '';
    var members = shown.map(function (combo) {
      return combo.appids.map(function (id) { return index[id]; })
        .filter(function (i) { return i !== undefined; })
        .sort(function (a, b) { return a - b; });
    });
    var describeCombo = function (k) {
      return members[k].map(function (i) { return plain(names[i]); }).join(' + ') +
        (members[k].length === 1 ? ' only' : '') + '\n' + number.format(shown[k].people) + ' people';
    };

    // On a narrow screen the accounts' own bars give their room to the columns.
    var width = $('chart-combinations').clientWidth || 800;
    var compact = width < 640;
    var ROW = 26;
    var BARS = 180;
    var SET_LABELS = compact ? 0 : 56;
    var SET_WIDTH = compact ? 0 : 100;
    var LABELS = compact ? Math.min(160, Math.round(width * 0.35)) : 160;
    var left = SET_LABELS + SET_WIDTH + LABELS;
    var matrixTop = 24 + BARS + 10;
    var matrixHeight = apps.length * ROW;
    var c = chart('chart-combinations', matrixTop + matrixHeight + 16);
    var columns = shown.map(function (_, k) { return String(k); });
    var column = (width - left - 16) / Math.max(1, shown.length);
    var dot = Math.max(4, Math.min(13, Math.floor(column * 0.6)));

    var dots = [];
    shown.forEach(function (_, k) {
      apps.forEach(function (__, i) {
        var member = members[k].indexOf(i) >= 0;
        dots.push({
          value: [k, i],
          symbolSize: member ? dot : Math.round(dot * 0.75),
          itemStyle: { color: member ? COLORS.ink : COLORS.empty, opacity: 1 }
        });
      });
    });
    var links = members
      .map(function (m, k) { return [k, m[0], m[m.length - 1]]; })
      .filter(function (d) { return d[1] !== d[2]; });

    c.setOption({
      aria: { enabled: true },
      animation: animate,
      tooltip: tooltip({}),
      grid: [
        { left: left, right: 16, top: 24, height: BARS, outerBoundsMode: 'none' },
        { left: left, right: 16, top: matrixTop, height: matrixHeight, outerBoundsMode: 'none' },
        { left: SET_LABELS, width: Math.max(1, SET_WIDTH), top: matrixTop, height: matrixHeight, outerBoundsMode: 'none' }
      ],
      xAxis: [
        { gridIndex: 0, type: 'category', data: columns, show: false },
        { gridIndex: 1, type: 'category', data: columns, show: false },
        { gridIndex: 2, type: 'value', inverse: true, show: false }
      ],
      yAxis: [
        { gridIndex: 0, type: 'value', name: 'people', minInterval: 1, nameTextStyle: { align: 'right' } },
        {
          gridIndex: 1,
          type: 'category',
          inverse: true,
          data: names.map(plain),
          axisLine: { show: false },
          axisTick: { show: false },
          splitArea: { show: true },
          axisLabel: { width: LABELS - 12, overflow: 'truncate', color: COLORS.ink }
        },
        { gridIndex: 2, type: 'category', inverse: true, data: names.map(plain), show: false }
      ],
      series: [
        {
          name: 'People',
          type: 'bar',
          xAxisIndex: 0,
          yAxisIndex: 0,
          barMaxWidth: 26,
          itemStyle: { color: COLORS.ink },
          label: {
            show: column >= 34,
            position: 'top',
            formatter: function (p) { return number.format(p.value); }
          },
          tooltip: { formatter: function (p) { return describeCombo(p.dataIndex); } },
          data: shown.map(function (combo) { return combo.people; })
        },
        {
          name: 'Connections',
          type: 'custom',
          xAxisIndex: 1,
          yAxisIndex: 1,
          silent: true,
          z: 1,
          renderItem: function (params, api) {
            var from = api.coord([api.value(0), api.value(1)]);
            var to = api.coord([api.value(0), api.value(2)]);
            return {
              type: 'line',
              shape: { x1: from[0], y1: from[1], x2: to[0], y2: to[1] },
              style: { stroke: COLORS.ink, lineWidth: Math.max(1, Math.round(dot / 4)) }
            };
          },
          data: links
        },
        {
          name: 'Accounts',
          type: 'scatter',
          xAxisIndex: 1,
          yAxisIndex: 1,
          z: 2,
          tooltip: { formatter: function (p) { return describeCombo(p.value[0]); } },
          data: dots
        },
        {
          name: 'Linked followers',
          type: 'bar',
          xAxisIndex: 2,
          yAxisIndex: 2,
          barMaxWidth: 16,
          silent: compact,
          itemStyle: { color: COLORS.linked, opacity: compact ? 0 : 1 },
          label: {
            show: !compact,
            position: 'left',
            color: COLORS.muted,
            formatter: function (p) { return number.format(p.value); }
          },
          tooltip: {
            formatter: function (p) {
              return plain(names[p.dataIndex]) + '\n' + number.format(p.value) + ' linked followers';
            }
          },
          data: apps.map(function (a) { return a.linkedFollowers; })
        }
      ]
    }, true);
  }

  function renderTrend(history) {
    var c = chart('chart-trend', 340);
    if (history.length === 0) {
      c.setOption({
        title: {
          text: 'No days recorded yet in the last ' + HISTORY_DAYS + ' days.',
          left: 'center',
          top: 'middle',
          textStyle: { color: COLORS.muted, fontSize: 14, fontWeight: 'normal' }
        }
      }, true);
      return;
    }
    var days = history.map(function (h) { return h.day; });
    // Accounts by appid, in the order they first appear.
    var order = [];
    var seen = {};
    history.forEach(function (h) {
      h.apps.forEach(function (a) {
        if (!seen[a.appid]) {
          seen[a.appid] = a;
          order.push(a);
        }
      });
    });
    var names = labels(order);
    var appSeries = order.map(function (app, i) {
      return {
        name: plain(names[i]),
        type: 'line',
        color: APP_COLORS[i % APP_COLORS.length],
        lineStyle: { width: 1.5 },
        symbolSize: 5,
        connectNulls: false,
        data: history.map(function (h) {
          var found = h.apps.filter(function (a) { return a.appid === app.appid; })[0];
          return found ? found.followers : null;
        })
      };
    });
    c.setOption({
      aria: { enabled: true },
      animation: animate,
      tooltip: tooltip({ trigger: 'axis' }),
      legend: { type: 'scroll', top: 0, left: 0, right: 0 },
      grid: { left: 8, right: 24, top: 44, bottom: 28 },
      xAxis: { type: 'category', data: days, boundaryGap: days.length === 1 },
      yAxis: { type: 'value', minInterval: 1 },
      series: [
        {
          name: 'Distinct people, at most',
          type: 'line',
          color: COLORS.ink,
          lineStyle: { width: 2, type: 'dashed' },
          symbolSize: 6,
          data: history.map(function (h) { return h.distinctPeople.atMost; })
        },
        {
          name: 'Distinct people, at least',
          type: 'line',
          color: COLORS.ink,
          lineStyle: { width: 3 },
          symbolSize: 6,
          data: history.map(function (h) { return h.distinctPeople.atLeast; })
        }
      ].concat(appSeries)
    }, true);
  }

  // ---- wiring --------------------------------------------------------

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var pasted = keyFrom(keyInput.value);
    if (!pasted) {
      keyInput.focus();
      showStatus('error', {
        title: 'The key field is empty or holds more than one word.',
        todo: 'Paste the key (u360_…) as union360 printed it, then press Use key.'
      });
      return;
    }
    store(KEY_STORAGE, pasted);
    useKey(pasted, 'Kept in this browser only (local storage); sent only to this server.');
    load();
  });

  forgetButton.addEventListener('click', function () {
    store(KEY_STORAGE, '');
    useKey('', playgroundKey()
      ? 'Forgotten here. The GraphiQL playground keeps its own copy in its Headers tab; clear it there too to forget it entirely.'
      : 'Forgotten: this browser no longer keeps a key for the dashboard.');
    hideCharts();
    askForKey();
  });

  refreshButton.addEventListener('click', load);

  var resizeTimer = null;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      // Layouts depend on the width (the UpSet chart's columns), so redraw.
      if (!lastAnswer || content.hidden) return;
      animate = false;
      render(lastAnswer.audience, lastAnswer.audienceHistory);
      animate = true;
    }, 150);
  });

  var own = keyFrom(stored(KEY_STORAGE));
  var fromPlayground = own ? '' : playgroundKey();
  if (own) {
    useKey(own, 'Kept in this browser only (local storage); sent only to this server.');
  } else if (fromPlayground) {
    useKey(fromPlayground, 'Using the key saved in the GraphiQL playground\'s Headers tab in this browser.');
  }
  load();
})();
