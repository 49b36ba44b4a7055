// Entry of the studio page. No StrictMode: it would render the repository's
// components twice and open the live connection twice in development.
import { createRoot } from 'react-dom/client';
import { App } from './App';
import './studio.css';

const container = document.getElementById('studio-root');
if (!container) throw new Error('index.html has no #studio-root element');
createRoot(container).render(<App />);
